package postgres

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

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
	return txn.Enter(ctx, b.db, func(fn func(backend.Tx) error) error { return b.update(ctx, fn) }, fn)
}

func (b *Backend) update(ctx context.Context, fn func(backend.Tx) error) error {
	var tx *Tx
	err := b.db.Update(ctx, func(ptx pgx.Tx) error {
		tx = &Tx{ctx: ctx, tx: ptx}
		return fn(tx)
	})
	if err == nil && len(tx.notices) > 0 {
		b.mu.RLock()
		fns := b.watches
		b.mu.RUnlock()
		for _, n := range tx.notices {
			for _, fn := range fns {
				fn(n)
			}
		}
	}
	return err
}

// View implements txn.Runner with DB.View: one REPEATABLE READ snapshot;
// under a txn.Join, the joined transaction.
func (b *Backend) View(ctx context.Context, fn func(backend.Tx) error) error {
	return txn.EnterView(ctx, b.db, func(fn func(backend.Tx) error) error {
		return b.db.View(ctx, func(ptx pgx.Tx) error { return fn(&Tx{ctx: ctx, tx: ptx}) })
	}, fn)
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
	ctx context.Context
	tx  pgx.Tx
	// eventLocked: this transaction holds the event lock (see
	// eventRows.Insert).
	eventLocked bool
	notices     []events.Notice

	// The audit log's: this transaction holds the audit lock (see
	// auditRows.Append).
	auditLocked bool
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
	return events.NewLog(txn.Narrow(b, func(t backend.Tx) events.TxLog { return t.Events() }), b.Watch)
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
