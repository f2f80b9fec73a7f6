package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// Backend is the PostgreSQL backend.Backend over an open DB: Update and
// View with the faces of every store moved onto the backend.
type Backend struct {
	db *DB

	mu      sync.RWMutex
	watches []func(events.Notice)

	// The tenant registry's read cache, one for every store over this
	// Backend (Tenants), made on first use.
	tenantOnce  sync.Once
	tenantCache *tenant.Cache

	// batches gathers the locking runner's Batch calls (batch.go).
	batches batchers
}

var _ backend.Backend = (*Backend)(nil)

// Backend returns the storage backend over db. Call it once: watchers
// registered on one Backend hear only its own transactions' events.
func (db *DB) Backend() *Backend { return &Backend{db: db} }

// Update implements txn.Runner with DB.Update: SERIALIZABLE, retried on
// conflicts (fn may run more than once), committed with
// synchronous_commit on. The watchers hear of the events of the attempt
// that committed, after COMMIT returned. Under a txn.Join it runs in the
// joined transaction of this database (txn.Enter), whose events are
// announced when it commits.
func (b *Backend) Update(ctx context.Context, fn func(backend.Tx) error) error {
	return b.update(ctx, serializable, fn)
}

// View implements txn.Runner with DB.View: one REPEATABLE READ snapshot;
// under a txn.Join, the joined transaction.
func (b *Backend) View(ctx context.Context, fn func(backend.Tx) error) error {
	return b.view(ctx, snapshot, fn)
}

// ViewOne implements txn.ViewOne: fn's one statement runs on its own,
// without BEGIN and COMMIT (READ COMMITTED: its own snapshot).
func (b *Backend) ViewOne(ctx context.Context, fn func(backend.Tx) error) error {
	return txn.EnterView(ctx, b.db, func(fn func(backend.Tx) error) error {
		return b.db.runReads(ctx, func(p *pipe) error {
			return fn(&Tx{ctx: ctx, tx: p, iso: pgx.ReadCommitted})
		})
	}, fn)
}

func (b *Backend) update(ctx context.Context, opts pgx.TxOptions, fn func(backend.Tx) error) error {
	return txn.Enter(ctx, b.db, func(fn func(backend.Tx) error) error {
		var tx *Tx
		err := b.db.runPipe(ctx, opts, func(p *pipe) error {
			tx = &Tx{ctx: ctx, tx: p, iso: opts.IsoLevel, write: true}
			return fn(tx)
		})
		if err == nil {
			for _, n := range tx.notices {
				b.hear(n)
			}
		}
		return err
	}, fn)
}

func (b *Backend) view(ctx context.Context, opts pgx.TxOptions, fn func(backend.Tx) error) error {
	return txn.EnterView(ctx, b.db, func(fn func(backend.Tx) error) error {
		return b.db.runPipe(ctx, opts, func(p *pipe) error { return fn(&Tx{ctx: ctx, tx: p, iso: opts.IsoLevel}) })
	}, fn)
}

// locking is the runner of the stores whose hot transactions would
// conflict under SERIALIZABLE without being wrong: the queue's accept and
// delivery records, many at once on neighbouring keys, where PostgreSQL's
// predicate locks (a page of an index at a time) make concurrent
// transactions fail and run again though they touch different rows.
// Its Update runs at READ COMMITTED, and the rows faces make up for it
// where a transaction reads a row to write it back: queueRows and
// suppressionRows read such rows FOR UPDATE in it (Tx.locking), a row
// they found missing is inserted without ON CONFLICT so that a
// concurrent insert of it makes this transaction run again, and counters
// are per connection (repRows). Its View is the Backend's.
type locking struct{ b *Backend }

func (l locking) Update(ctx context.Context, fn func(backend.Tx) error) error {
	return l.b.update(ctx, lockingWrite, fn)
}

func (l locking) View(ctx context.Context, fn func(backend.Tx) error) error { return l.b.View(ctx, fn) }

func (l locking) ViewOne(ctx context.Context, fn func(backend.Tx) error) error {
	return l.b.ViewOne(ctx, fn)
}

// EventRunner implements backend.Backend.
func (b *Backend) EventRunner() txn.Runner[backend.Tx] { return eventReading{b} }

// eventReading is the event log's runner. Its View is READ COMMITTED, each
// statement with a snapshot of its own: reading the log after a cursor
// first fixes the horizon below which every event is final and then reads
// in a later snapshot (eventRows.Tenant). Its Update is locking's.
type eventReading struct{ b *Backend }

func (e eventReading) Update(ctx context.Context, fn func(backend.Tx) error) error {
	return locking(e).Update(ctx, fn)
}

func (e eventReading) View(ctx context.Context, fn func(backend.Tx) error) error {
	return e.b.view(ctx, statementRead, fn)
}

func (e eventReading) ViewOne(ctx context.Context, fn func(backend.Tx) error) error {
	return e.b.ViewOne(ctx, fn)
}

// Watch implements backend.Backend, for this process's transactions.
func (b *Backend) Watch(fn func(events.Notice)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watches = append(slices.Clip(b.watches), fn)
}

// Tx is one PostgreSQL transaction with every store's face. The faces
// take no context: the transaction's is used for every statement.
type Tx struct {
	ctx   context.Context
	tx    *pipe
	iso   pgx.TxIsoLevel
	write bool
	// absent: rows a locking transaction found missing (Tx.missing).
	absent map[string]bool
	// eventLocked: this transaction holds its event horizon lock (see
	// eventRows.Insert).
	eventLocked bool
	notices     []events.Notice

	// The audit log's: this transaction holds the audit lock (see
	// auditRows.Append).
	auditLocked bool

	// claimed: the tuple ids of the schedule rows this transaction's
	// claim locked (queueRows.Claimable), for its Lease.
	claimed map[string]pgtype.TID

	// announced: the registry changes this transaction has announced to
	// the other nodes (Tx.announce), each once.
	announced map[string]bool
}

// locking reports a READ COMMITTED read-write transaction (the locking
// runner's): rows read to be written back are read FOR UPDATE.
func (t *Tx) locking() bool { return t.iso == pgx.ReadCommitted && t.write }

// missing records, in a locking transaction, that the row key of table
// was read and not found: no lock holds it, so a concurrent transaction
// may insert it meanwhile. The write that follows then inserts it plainly
// (insertRace) instead of overwriting what the other one wrote.
func (t *Tx) missing(table string, key ...[]byte) {
	if !t.locking() {
		return
	}
	if t.absent == nil {
		t.absent = map[string]bool{}
	}
	t.absent[rowKey(table, key)] = true
}

// wasMissing reports a row missing() recorded, forgetting it: after the
// insert it is there.
func (t *Tx) wasMissing(table string, key ...[]byte) bool {
	k := rowKey(table, key)
	if !t.absent[k] {
		return false
	}
	delete(t.absent, k)
	return true
}

func rowKey(table string, key [][]byte) string {
	var b strings.Builder
	b.WriteString(table)
	for _, k := range key {
		b.WriteByte(0)
		b.Write(k)
	}
	return b.String()
}

// insertRace turns the unique violation of such an insert into a
// conflict that runs the transaction again.
func insertRace(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return raced{err}
	}
	return err
}

// forUpdate is the clause that locks the rows a locking transaction reads
// (empty in the other ones, where SERIALIZABLE or a read-only snapshot
// keeps them consistent).
func (t *Tx) forUpdate() string {
	if t.locking() {
		return " FOR UPDATE"
	}
	return ""
}

// xactLock takes the transaction-level advisory lock key once per
// transaction: *held records that it is taken, and COMMIT or ROLLBACK
// releases it.
func (t *Tx) xactLock(key int64, held *bool) error {
	if *held {
		return nil
	}
	if _, err := t.tx.Exec(t.ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		return err
	}
	*held = true
	return nil
}

// Events implements backend.Tx.
func (t *Tx) Events() events.TxLog { return eventRows{t} }

// Suppressions implements backend.Tx.
func (t *Tx) Suppressions() suppression.Rows { return suppressionRows{t} }

// The webhook store and the audit log.

// Webhooks implements backend.Tx.
func (t *Tx) Webhooks() webhooks.Rows { return webhookRows{t} }

// Audit implements backend.Tx.
func (t *Tx) Audit() audit.Rows { return auditRows{t} }

// Events returns the event log kept by b.
func Events(b *Backend) *events.Log {
	return events.NewLog(txn.Narrow(b.EventRunner(), func(t backend.Tx) events.TxLog { return t.Events() }), b.Watch)
}

// Suppressions returns the suppression list kept by b, with the address
// hash key and clock of suppression.New.
func Suppressions(b *Backend, key []byte, now func() time.Time) *suppression.Service {
	return suppression.New(txn.Narrow(b, func(t backend.Tx) suppression.Tx { return t }), key, now)
}

// Webhooks returns the webhook store kept by b.
func Webhooks(b *Backend) *webhooks.Service {
	return webhooks.New(txn.Narrow(b, func(t backend.Tx) webhooks.Tx { return t }))
}

// Audit returns the admin API's audit log kept by b.
func Audit(b *Backend) *audit.Log {
	return audit.New(txn.Narrow(b, func(t backend.Tx) audit.Rows { return t.Audit() }))
}

// ConsoleUsers returns the console's accounts and sessions kept by b,
// with the seal key and clock of consoleusers.New.
func ConsoleUsers(b *Backend, sealKey []byte, now func() time.Time) (*consoleusers.Service, error) {
	return consoleusers.New(txn.Narrow(b, func(t backend.Tx) consoleusers.Rows { return t.ConsoleUsers() }), sealKey, now)
}
