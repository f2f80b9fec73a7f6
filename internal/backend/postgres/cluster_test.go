package postgres

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/tenant"
)

// node is one Heed node's view of a shared database: its own pool, its
// backend and its cluster listener.
type node struct {
	db      *DB
	b       *Backend
	cluster *Cluster
	tenants *tenant.DBStore
}

// startNode opens dsn as a node with o's listener, and waits until it
// listens.
func startNode(t *testing.T, dsn string, o ClusterOptions, tweak func(*pgxpool.Config)) *node {
	t.Helper()
	db := openTest(t, dsn, tweak)
	n := &node{db: db, b: db.Backend()}
	n.tenants = Tenants(n.b)
	n.cluster = n.b.Cluster(o)
	t.Cleanup(n.cluster.Close)
	select {
	case <-n.cluster.Listening():
	case <-time.After(30 * time.Second):
		t.Fatal("the node never listened")
	}
	return n
}

// eventually waits until cond holds, checking every 10 ms, for up to
// limit, and returns how long it took.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(limit)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("after %s: %s", limit, what)
		}
	}
	return time.Since(start)
}

// TestRegistryChangesReachOtherNodes: node 2 serves the ip networks, a
// domain's DKIM keys and a tenant's pause from memory; node 1 revokes an
// ip credential, pauses the tenant and adds a key. Node 2 must stop
// letting the network in, hold the tenant's mail and sign with the new
// key, all without a write of its own (before issue 17 it kept the old
// pause and keys until its next write of the registry, for ever on a node
// that makes none; the revoked credential itself is read from the
// database at each use).
func TestRegistryChangesReachOtherNodes(t *testing.T) {
	_, dsn := migrated(t)
	ctx := context.Background()
	var guard2 *reputation.Guard
	var mu sync.Mutex
	var heard []string
	n1 := startNode(t, dsn, ClusterOptions{}, nil)
	n2 := startNode(t, dsn, ClusterOptions{Changed: func(kind, subject string) {
		mu.Lock()
		heard = append(heard, kind+" "+subject)
		mu.Unlock()
		if kind == "paused" {
			if _, err := guard2.Refresh(ctx, subject); err != nil {
				t.Error(err)
			}
		}
	}}, nil)
	guard1 := reputation.NewGuard(Reputation(n1.b), reputation.GuardOptions{})
	guard2 = reputation.NewGuard(Reputation(n2.b), reputation.GuardOptions{})

	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	must(t, n1.tenants.CreateTenant(ctx, tenant.Tenant{ID: "acme", Name: "Acme", CreatedAt: at}))
	ip := tenant.Credential{ID: "n1", Tenant: "acme", Kind: tenant.KindIP, Network: netip.MustParsePrefix("198.51.100.0/24"), CreatedAt: at}
	must(t, n1.tenants.CreateIPCredential(ctx, ip, 0))
	must(t, n1.tenants.AddDomain(ctx, tenant.Domain{Name: "acme.example", Tenant: "acme", CreatedAt: at}))

	// Node 2 reads each once: from now on it answers from its cache.
	addr := netip.MustParseAddr("198.51.100.7")
	eventually(t, 10*time.Second, "node 2 never saw the new credential", func() bool {
		c, err := n2.tenants.CredentialForAddr(ctx, addr)
		return err == nil && c.ID == "n1"
	})
	keys, err := n2.tenants.Keys(ctx, "acme.example")
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("keys before: %v", keys)
	}

	must(t, n1.tenants.DeleteCredential(ctx, "acme", "n1"))
	revoked := eventually(t, 10*time.Second, "node 2 still lets the revoked network in", func() bool {
		_, err := n2.tenants.CredentialForAddr(ctx, addr)
		return errors.Is(err, tenant.ErrNotFound)
	})
	if _, err := guard1.Pause(ctx, "acme", "operator", "test"); err != nil {
		t.Fatal(err)
	}
	paused := eventually(t, 10*time.Second, "node 2 does not hold the paused tenant", func() bool {
		return guard2.Holds("acme", false)
	})
	key := tenant.DKIMKey{Domain: "acme.example", Selector: "s1", Algorithm: "ed25519", State: "active", TXT: "v=DKIM1", Sealed: []byte("x"), CreatedAt: at}
	must(t, n1.tenants.PutKey(ctx, key))
	signs := eventually(t, 10*time.Second, "node 2 does not see the new DKIM key", func() bool {
		keys, err := n2.tenants.Keys(ctx, "acme.example")
		return err == nil && len(keys) == 1 && keys[0].Selector == "s1"
	})
	t.Logf("seen on node 2 after: revocation %s, new key %s, pause %s", revoked, signs, paused)
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"credential acme", "dkim_key acme.example", "paused acme"} {
		if !slices.Contains(heard, want) {
			t.Errorf("node 2 heard %q, not %q", heard, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEventsWakeOtherNodes: an event committed on node 1 wakes node 2's
// watchers (a webhook dispatcher, a console tail) with a notice of its
// tenant; node 1 does not hear its own commit twice.
func TestEventsWakeOtherNodes(t *testing.T) {
	_, dsn := migrated(t)
	n1 := startNode(t, dsn, ClusterOptions{}, nil)
	n2 := startNode(t, dsn, ClusterOptions{}, nil)
	var mu sync.Mutex
	var got1, got2 []events.Notice
	n1.b.Watch(func(n events.Notice) { mu.Lock(); got1 = append(got1, n); mu.Unlock() })
	n2.b.Watch(func(n events.Notice) { mu.Lock(); got2 = append(got2, n); mu.Unlock() })

	ev := events.Event{Type: events.MessageDelivered, Time: time.Now(), Data: events.Data{Tenant: "acme", Recipient: "a@example.com"}}
	must(t, Events(n1.b).Record(context.Background(), &ev))
	eventually(t, 10*time.Second, "node 2 never heard of acme's event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got2, events.Notice{Tenant: "acme", Remote: true})
	})
	// Node 1 announced it (node 2 heard it); its own watchers had it once,
	// from the commit, with the type the metrics count.
	mu.Lock()
	defer mu.Unlock()
	for _, n := range got1 {
		if n.Remote {
			t.Errorf("node 1 heard its own event again: %+v", got1)
		}
	}
	if len(got1) != 1 || got1[0].Type != events.MessageDelivered {
		t.Errorf("node 1's watchers heard %+v", got1)
	}
}

// statements is a pgx tracer that keeps each statement a node sends and
// whether its connection was inside a transaction then, batched ones
// (pipe.go) included.
type statements struct {
	mu  sync.Mutex
	all []traced
	// batchTx: the batch being read is in a transaction (it began one,
	// or its connection was in one).
	batchTx bool
}

func (s *statements) TraceBatchStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	s.mu.Lock()
	s.batchTx = conn.PgConn().TxStatus() != 'I' ||
		len(d.Batch.QueuedQueries) > 0 && strings.HasPrefix(d.Batch.QueuedQueries[0].SQL, "BEGIN")
	s.mu.Unlock()
	return ctx
}

func (s *statements) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, d pgx.TraceBatchQueryData) {
	s.mu.Lock()
	tr := traced{sql: d.SQL, inTx: s.batchTx}
	if strings.Contains(d.SQL, "pg_notify") && len(d.Args) > 0 {
		tr.channel, _ = d.Args[0].(string)
	}
	s.all = append(s.all, tr)
	s.mu.Unlock()
}

func (s *statements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

type traced struct {
	sql     string
	channel string // of a pg_notify
	inTx    bool
}

func (s *statements) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	tr := traced{sql: d.SQL, inTx: conn.PgConn().TxStatus() != 'I'}
	if strings.Contains(d.SQL, "pg_notify") && len(d.Args) > 0 {
		tr.channel, _ = d.Args[0].(string)
	}
	s.all = append(s.all, tr)
	s.mu.Unlock()
	return ctx
}

func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *statements) list() []traced {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all)
}

// TestEventNoticeOutsideTransactions: the notice of new events is sent
// after the commit that wrote them, in no transaction, and the
// transactions that write events carry no NOTIFY (it would serialise
// their commits, WAL flush included); a registry change notifies inside
// its own transaction, so that the notice comes exactly with the change.
func TestEventNoticeOutsideTransactions(t *testing.T) {
	_, dsn := migrated(t)
	st := &statements{}
	n1 := startNode(t, dsn, ClusterOptions{}, func(c *pgxpool.Config) { c.ConnConfig.Tracer = st })
	n2 := startNode(t, dsn, ClusterOptions{}, nil)
	heard := make(chan struct{}, 1)
	n2.b.Watch(func(n events.Notice) {
		if n.Remote && n.Tenant == "acme" {
			select {
			case heard <- struct{}{}:
			default:
			}
		}
	})
	ctx := context.Background()
	for i := range 20 {
		ev := events.Event{Type: events.MessageDelivered, Time: time.Now(), Data: events.Data{Tenant: "acme", MessageID: "m" + string(rune('a'+i))}}
		must(t, Events(n1.b).Record(ctx, &ev))
	}
	select {
	case <-heard:
	case <-time.After(10 * time.Second):
		t.Fatal("node 2 never heard of the events")
	}
	must(t, n1.tenants.CreateTenant(ctx, tenant.Tenant{ID: "acme", Name: "Acme", CreatedAt: time.Now()}))

	var outside, inside, registry, events int
	for _, s := range st.list() {
		switch {
		case strings.Contains(s.sql, "INSERT INTO events"):
			events++
		case s.channel == eventsChannel && s.inTx:
			inside++
		case s.channel == eventsChannel:
			outside++
		case s.channel == registryChannel && s.inTx:
			registry++
		case s.channel != "":
			t.Errorf("a notice on %q outside a transaction", s.channel)
		}
	}
	if events != 20 {
		t.Fatalf("traced %d event inserts, want 20", events)
	}
	t.Logf("20 event commits: %d notices after them, %d in them", outside, inside)
	if outside == 0 || outside > 20 {
		t.Errorf("%d event notices sent outside transactions, want 1 to 20 (debounced)", outside)
	}
	if inside != 0 {
		t.Errorf("%d event notices inside transactions, want none", inside)
	}
	if registry != 2 {
		t.Errorf("%d registry notices in the new tenant's transaction, want 2 (its lists, itself)", registry)
	}
}

// TestListenerLossDropsEverything: notices sent while a node's listening
// connection is down are lost with it, so after it is made again the node
// must treat everything as changed. A change is made with no notice (as
// if its notice was lost); node 2 serves the old value from memory until
// its listener's session is ended; once it listens again it reads afresh.
func TestListenerLossDropsEverything(t *testing.T) {
	_, dsn := migrated(t)
	ctx := context.Background()
	var missed atomic.Int32
	var heardDomain atomic.Bool
	n1 := startNode(t, dsn, ClusterOptions{}, nil)
	n2 := startNode(t, dsn, ClusterOptions{Missed: func() { missed.Add(1) }, Changed: func(kind, subject string) {
		if kind == "domain" {
			heardDomain.Store(true)
		}
	}}, nil)
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	must(t, n1.tenants.CreateTenant(ctx, tenant.Tenant{ID: "acme", Name: "Acme", CreatedAt: at}))
	must(t, n1.tenants.AddDomain(ctx, tenant.Domain{Name: "acme.example", Tenant: "acme", CreatedAt: at}))
	// Until node 2 has heard of the domain: a notice heard after it
	// cached the keys below would empty its cache again.
	eventually(t, 10*time.Second, "node 2 never heard of the domain", heardDomain.Load)
	if _, err := n2.tenants.Domain(ctx, "acme.example"); err != nil {
		t.Fatal(err)
	}
	keys, err := n2.tenants.Keys(ctx, "acme.example")
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("keys before: %v", keys)
	}
	_, err = n1.db.pool.Exec(ctx, `INSERT INTO dkim_keys (domain, selector, algorithm, state, txt, sealed, created_at)
		VALUES ('acme.example', 's1', 'ed25519', 'active', 'v=DKIM1', 'x', now())`)
	must(t, err)
	if keys, _ := n2.tenants.Keys(ctx, "acme.example"); len(keys) != 0 {
		t.Fatalf("node 2 read a change it heard nothing of: the cache is not in use (%v)", keys)
	}

	before := missed.Load()
	_, err = n1.db.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'heed cluster listener' AND datname = current_database()`)
	must(t, err)
	eventually(t, 10*time.Second, "node 2 serves the old keys after listening again", func() bool {
		keys, err := n2.tenants.Keys(ctx, "acme.example")
		return err == nil && len(keys) == 1 && missed.Load() > before
	})
}
