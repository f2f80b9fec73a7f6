package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// Several Heed nodes on one database (issue 17) keep in memory what every
// message reads (the tenant registry's cache, the reputation guard's
// paused tenants) and wait on notices of new events (webhook dispatchers,
// the console's live tail). A change committed on one node reaches the
// others through PostgreSQL's NOTIFY (the SQL command reference, "NOTIFY"):
//
//   - heed_registry: sent inside the transaction of every change of the
//     registry (tenants, credentials and API keys, domains, DKIM keys,
//     lists) and of a tenant's pause or resume, so that it is delivered
//     exactly when the change is visible, and not at all if it rolls back.
//     The payload is "kind subject": the kind of record and its tenant (a
//     domain for DKIM keys and a deleted domain). These changes are rare.
//   - heed_events: never in the transactions that write events (a message
//     accepted, a delivery recorded): a transaction that notified takes a
//     cluster-wide lock at COMMIT, held through its WAL flush, and would
//     make those commits flush one at a time. Instead, after such commits
//     the node sends one NOTIFY of its own, at most every announceEvery,
//     naming the tenants that have new events.
//
// Each node listens on a connection of its own, outside the pool. When it
// is lost the notices sent meanwhile are lost with it, so after every
// (re)connection the node treats everything as changed: the cache is
// dropped, the paused tenants read again, every tenant's watchers woken.

// The notification channels.
const (
	registryChannel = "heed_registry"
	eventsChannel   = "heed_events"
)

// kindPaused is the registry notice of a tenant paused or resumed.
const kindPaused = "paused"

// announce has the other nodes hear, when this transaction commits, that
// it changed a record of kind for subject; each once per transaction.
func (t *Tx) announce(kind, subject string) error {
	p := kind + " " + subject
	if t.announced[p] {
		return nil
	}
	if _, err := t.tx.Exec(t.ctx, "SELECT pg_notify($1, $2)", registryChannel, p); err != nil {
		return err
	}
	if t.announced == nil {
		t.announced = map[string]bool{}
	}
	t.announced[p] = true
	return nil
}

// announceEvery spaces a node's event notices: a busy node commits events
// hundreds of times a second, and a dispatcher woken 20 ms late loses
// nothing.
const announceEvery = 20 * time.Millisecond

// maxPayload keeps a notice under PostgreSQL's 8000-byte limit of a
// payload; a longer list of tenants goes in several.
const maxPayload = 7000

// Reconnection back-off of the listening connection.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = 2 * time.Second
)

// ClusterOptions say what a node does with what the other nodes announce.
type ClusterOptions struct {
	// Changed hears each change of the registry or of a tenant's pause,
	// of any node, this one included, after the tenant cache was dropped:
	// kind ("tenant", "credential", "domain", "dkim_key", "list",
	// "paused") and its tenant or domain.
	Changed func(kind, subject string)
	// Missed hears that notices may have been lost: after the listening
	// connection was made or made again. Reload what is kept in memory.
	Missed func()
	Logger *slog.Logger
}

// Cluster is a node's part in a cluster of nodes on one database: the
// listener of the others' notices and the announcer of its own events.
//
// Lifecycle: Backend.Cluster starts it; Close stops it, before the
// database is closed.
type Cluster struct {
	b    *Backend
	o    ClusterOptions
	log  *slog.Logger
	node string // this node's name in event notices, to skip its own

	mu      sync.Mutex
	pending map[string]bool // tenants with events not yet announced
	kick    chan struct{}

	cancel context.CancelFunc
	done   sync.WaitGroup

	// listening is closed once the first LISTEN succeeded (for tests).
	listening chan struct{}
	once      sync.Once
}

// Cluster starts the listener and the announcer of events of b.
func (b *Backend) Cluster(o ClusterOptions) *Cluster {
	if o.Logger == nil {
		o.Logger = b.db.log
	}
	id := make([]byte, 8)
	rand.Read(id)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		b: b, o: o, log: o.Logger, node: hex.EncodeToString(id),
		pending: map[string]bool{}, kick: make(chan struct{}, 1),
		cancel: cancel, listening: make(chan struct{}),
	}
	b.Watch(c.committed)
	c.done.Go(func() { c.listen(ctx) })
	c.done.Go(func() { c.announceEvents(ctx) })
	return c
}

// Close stops listening and announcing, and waits for both.
func (c *Cluster) Close() {
	c.cancel()
	c.done.Wait()
}

// committed runs on the committer of every transaction of this node that
// wrote events: it only notes the tenant, the announcer sends.
func (c *Cluster) committed(n events.Notice) {
	if n.Remote {
		return
	}
	c.mu.Lock()
	c.pending[n.Tenant] = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// eventNotice is the payload of heed_events.
type eventNotice struct {
	Node    string   `json:"n"`
	Tenants []string `json:"t"`
}

// announceEvents sends the pending tenants' notices, at most once every
// announceEvery, outside any transaction, until ctx ends.
func (c *Cluster) announceEvents(ctx context.Context) {
	wait := time.NewTimer(announceEvery)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		c.mu.Lock()
		tenants := c.pending
		c.pending = map[string]bool{}
		c.mu.Unlock()
		for _, p := range c.payloads(tenants) {
			if _, err := c.b.db.pool.Exec(ctx, "SELECT pg_notify($1, $2)", eventsChannel, p); err != nil && ctx.Err() == nil {
				// The other nodes' dispatchers read their endpoints again
				// within webhooks' reloadEvery; nothing is lost, only late.
				c.log.Warn("postgres: announcing new events to the other nodes", "err", classify(ctx, err))
			}
		}
		wait.Reset(announceEvery)
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
	}
}

// payloads writes the tenants into notices under maxPayload bytes each.
func (c *Cluster) payloads(tenants map[string]bool) []string {
	var out []string
	n := eventNotice{Node: c.node}
	size := 0
	flush := func() {
		if len(n.Tenants) > 0 {
			b, _ := json.Marshal(n)
			out = append(out, string(b))
		}
		n.Tenants, size = nil, 0
	}
	for t := range tenants {
		if size+len(t)+8 > maxPayload {
			flush()
		}
		n.Tenants = append(n.Tenants, t)
		size += len(t) + 8 // quotes, a comma, and escapes to spare
	}
	flush()
	return out
}

// listen keeps a listening connection until ctx ends, making it again
// after a loss with a growing back-off.
func (c *Cluster) listen(ctx context.Context) {
	delay := minRetry
	for ctx.Err() == nil {
		connected, err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			delay = minRetry
		}
		c.log.Warn("postgres: the connection that hears the other nodes' changes was lost; making it again", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, maxRetry)
	}
}

// session connects, listens, treats everything as changed, and then
// hands each notification on until the connection fails or ctx ends.
func (c *Cluster) session(ctx context.Context) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, ownConn(c.b.db, "heed cluster listener"))
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+registryChannel+"; LISTEN "+eventsChannel); err != nil {
		return false, err
	}
	if err := c.missed(ctx, conn); err != nil {
		return true, err
	}
	c.once.Do(func() { close(c.listening) })
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		switch n.Channel {
		case registryChannel:
			kind, subject, _ := strings.Cut(n.Payload, " ")
			c.b.invalidateTenants()
			if c.o.Changed != nil {
				c.o.Changed(kind, subject)
			}
		case eventsChannel:
			var en eventNotice
			if json.Unmarshal([]byte(n.Payload), &en) != nil || en.Node == c.node {
				continue // this node's watchers heard of its commits already
			}
			for _, t := range en.Tenants {
				c.b.hear(events.Notice{Tenant: t, Remote: true})
			}
		}
	}
}

// missed treats everything as changed: the notices sent while this node
// was not listening are lost.
func (c *Cluster) missed(ctx context.Context, conn *pgx.Conn) error {
	c.b.invalidateTenants()
	if c.o.Missed != nil {
		c.o.Missed()
	}
	rows, err := conn.Query(ctx, "SELECT id FROM tenants")
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, id := range ids {
		c.b.hear(events.Notice{Tenant: id, Remote: true})
	}
	return nil
}

// Listening is closed once the node first listens: changes committed
// after it are heard.
func (c *Cluster) Listening() <-chan struct{} { return c.listening }

// invalidateTenants drops the tenant registry's cache, if one was made.
func (b *Backend) invalidateTenants() {
	b.tenantOnce.Do(func() { b.tenantCache = tenant.NewCache() })
	b.tenantCache.Invalidate()
}

// hear tells this node's watchers of a notice: of its own commits
// (Backend.update) or from another node (Cluster).
func (b *Backend) hear(n events.Notice) {
	b.mu.RLock()
	fns := b.watches
	b.mu.RUnlock()
	for _, fn := range fns {
		fn(n)
	}
}

// ownConn is the configuration of a connection outside the pool, named
// for pg_stat_activity.
func ownConn(db *DB, name string) *pgx.ConnConfig {
	cc := db.pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["application_name"] = name
	return cc
}
