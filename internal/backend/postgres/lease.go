package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/webhooks"
)

// Leases are the work one node of several does for all (issue 17): a
// periodic job, the dispatch to one webhook endpoint. Each lease is a
// session-level advisory lock (pg_try_advisory_lock, bigint form) on a
// connection the node keeps for them alone, outside the pool: a lock is
// held until it is released or its session ends, so the lease of a node
// that dies or loses the database goes at once, and another node's next
// try takes it (PostgreSQL docs, "Advisory Locks").
//
// A node that loses its connection holds nothing any more: Holds turns
// false and the OnLost functions run, so that it stops what it did. It
// learns of the loss at its next use of the connection, a ping every
// pingEvery at the latest; until then, if the database ended the session
// first (a network partition), two nodes may work on one lease for that
// long. The keys are hashes of "heed.lease " and the lease's name, apart
// from every other lock of Heed's (the event horizon's two-int4 form, the
// migration and audit keys).
//
// Lifecycle: DB.Leases, then Take, Holds, Release from any goroutine,
// then Close, before the database is closed.
type Leases struct {
	db  *DB
	log *slog.Logger

	connMu sync.Mutex // held while the connection is used
	conn   *pgx.Conn

	mu   sync.Mutex
	held map[int64]bool
	lost []func()

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// pingEvery spaces the checks that the leases' connection is alive;
// takeTimeout bounds a Take.
const (
	pingEvery   = time.Second
	takeTimeout = 5 * time.Second
)

// Leases returns the node's leases on db and starts checking their
// connection.
func (db *DB) Leases() *Leases {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Leases{db: db, log: db.log, held: map[int64]bool{}, cancel: cancel}
	l.done.Go(func() { l.watch(ctx) })
	return l
}

// leaseKey is the advisory lock key of the lease name.
func leaseKey(name string) int64 {
	h := sha256.Sum256([]byte("heed.lease " + name))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// OnLost adds fn to what runs when the connection is lost with the
// leases it held (not on Release or Close).
func (l *Leases) OnLost(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = append(l.lost, fn)
}

// Holds reports whether this node holds the lease name, as far as it
// knows (see Leases).
func (l *Leases) Holds(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[leaseKey(name)]
}

// Take takes the lease name if no node holds it, and reports whether this
// node holds it (it may have held it already). A node that cannot reach
// the database holds nothing: false with the error.
func (l *Leases) Take(ctx context.Context, name string) (bool, error) {
	k := leaseKey(name)
	if l.Holds(name) {
		return true, nil
	}
	// Bounded: the dispatcher's loop and the jobs wait on it, and a
	// database that does not answer must not hold them.
	ctx, cancel := context.WithTimeout(ctx, takeTimeout)
	defer cancel()
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, ownConn(l.db, "heed leases"))
		if err != nil {
			return false, classify(ctx, err)
		}
		l.conn = conn
	}
	var got bool
	if err := l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", k).Scan(&got); err != nil {
		l.drop(ctx)
		return false, classify(ctx, err)
	}
	if got {
		l.mu.Lock()
		l.held[k] = true
		l.mu.Unlock()
	}
	return got, nil
}

// Release gives the lease name back, for another node to take.
func (l *Leases) Release(ctx context.Context, name string) {
	k := leaseKey(name)
	l.mu.Lock()
	had := l.held[k]
	delete(l.held, k)
	l.mu.Unlock()
	if !had {
		return
	}
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.conn == nil {
		return
	}
	if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", k); err != nil {
		l.drop(ctx) // a broken connection holds nothing
	}
}

// watch pings the connection every pingEvery until ctx ends, so that a
// node learns soon that it lost its leases.
func (l *Leases) watch(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.connMu.Lock()
		if l.conn != nil {
			pctx, cancel := context.WithTimeout(ctx, pingEvery)
			if err := l.conn.Ping(pctx); err != nil && ctx.Err() == nil {
				l.log.Warn("postgres: the connection holding this node's leases was lost; their work stops here and another node takes it", "err", err)
				l.drop(ctx)
			}
			cancel()
		}
		l.connMu.Unlock()
	}
}

// drop closes the connection (l.connMu held): every lease goes with it.
func (l *Leases) drop(ctx context.Context) {
	if l.conn != nil {
		_ = l.conn.Close(context.WithoutCancel(ctx))
		l.conn = nil
	}
	l.mu.Lock()
	had := len(l.held) > 0
	clear(l.held)
	fns := l.lost
	l.mu.Unlock()
	if had {
		for _, fn := range fns {
			fn()
		}
	}
}

// Close stops the checks, releases every lease and closes the
// connection.
func (l *Leases) Close() {
	l.cancel()
	l.done.Wait()
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.conn != nil {
		// Released before the connection closes: the server ends a
		// closed session a moment later, and a node that stops should
		// hand its work over at once.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
		_ = l.conn.Close(ctx)
		cancel()
		l.conn = nil
	}
	l.mu.Lock()
	clear(l.held)
	l.mu.Unlock()
}

// backendPID is the server process of the leases' connection (0: none),
// for tests that end it.
func (l *Leases) backendPID() uint32 {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.conn == nil {
		return 0
	}
	return l.conn.PgConn().PID()
}

// Webhooks returns the owner of webhook endpoints over these leases: one
// node dispatches each endpoint.
func (l *Leases) Webhooks() webhooks.Owner { return hookOwner{l} }

type hookOwner struct{ l *Leases }

func hookLease(tenant, id string) string { return "webhook endpoint " + tenant + "\x00" + id }

func (o hookOwner) Claim(ctx context.Context, tenant, id string) bool {
	ok, err := o.l.Take(ctx, hookLease(tenant, id))
	if err != nil && ctx.Err() == nil {
		o.l.log.Warn("postgres: taking a webhook endpoint's lease", "tenant", tenant, "endpoint", id, "err", err)
	}
	return ok
}

func (o hookOwner) Holds(tenant, id string) bool { return o.l.Holds(hookLease(tenant, id)) }

func (o hookOwner) Release(ctx context.Context, tenant, id string) {
	o.l.Release(ctx, hookLease(tenant, id))
}
