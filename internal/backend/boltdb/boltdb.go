// Package boltdb is Heed's embedded storage backend: the transactions of
// the bbolt database that internal/store opens (its group commit, buckets
// and schema version), with the rows of every store moved onto the
// backend (see docs/storage.md). The bucket layouts are those the domain
// packages' bolt*.go files used, byte for byte, except the queue's, which
// schema version 6 changed to write fewer pages per message
// (internal/store/queuelayout.go; internal/store upgrades older files in
// place).
//
// Update goes through internal/store's group commit, which may run a
// function more than once (a batch is retried without the function that
// failed): functions work only through their transaction.
package boltdb

import (
	"context"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// Backend is the bbolt backend over an open database. It holds no state
// of its own, so any number of them over one database agree.
type Backend struct{ db *store.DB }

var _ backend.Backend = (*Backend)(nil)

// New returns the backend over db.
func New(db *store.DB) *Backend { return &Backend{db: db} }

// Update implements txn.Runner: fn runs in the group commit's shared
// transaction and Update returns once it is on disk. Under a txn.Join it
// runs in the joined transaction of this database (txn.Enter).
func (b *Backend) Update(ctx context.Context, fn func(backend.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return txn.Enter(ctx, b.db, func(fn func(backend.Tx) error) error {
		return b.db.Update(func(tx *bolt.Tx) error { return fn(TxFromBolt(tx)) })
	}, fn)
}

// View implements txn.Runner; under a txn.Join, in its open transaction.
func (b *Backend) View(ctx context.Context, fn func(backend.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return txn.EnterView(ctx, b.db, func(fn func(backend.Tx) error) error {
		return b.db.View(func(tx *bolt.Tx) error { return fn(TxFromBolt(tx)) })
	}, fn)
}

// EventRunner implements backend.Backend: bbolt's one writer commits in
// sequence order, so the event log needs no runner of its own.
func (b *Backend) EventRunner() txn.Runner[backend.Tx] { return b }

// Tx is one bbolt transaction with every store's face.
type Tx struct{ tx *bolt.Tx }

// TxFromBolt gives the faces of a transaction that other bbolt code holds:
// the bridge for the stores not yet moved onto the backend (tests that
// write events in a bbolt transaction of their own), to be removed when
// they are. Only bbolt code may call it.
func TxFromBolt(tx *bolt.Tx) *Tx { return &Tx{tx: tx} }

// Events implements backend.Tx.
func (t *Tx) Events() events.TxLog { return eventRows{t.tx} }

// The webhook store and the audit log.

// Webhooks implements backend.Tx.
func (t *Tx) Webhooks() webhooks.Rows { return webhookRows{t.tx} }

// Audit implements backend.Tx.
func (t *Tx) Audit() audit.Rows { return auditRows{t.tx} }

// ConsoleUsers implements backend.Tx.
func (t *Tx) ConsoleUsers() consoleusers.Rows { return consoleRows{t.tx} }

// Watch implements backend.Backend.
func (b *Backend) Watch(fn func(events.Notice)) {
	watchers.Lock()
	defer watchers.Unlock()
	if watchers.m == nil {
		watchers.m = make(map[*bolt.DB][]func(events.Notice))
	}
	db := b.db.Bolt()
	watchers.m[db] = append(slices.Clip(watchers.m[db]), fn)
}

// watchers holds the functions each database's events are announced to,
// by database rather than by Backend, since any number of Backends (and
// TxFromBolt's bridges) share one database.
var watchers struct {
	sync.RWMutex
	m map[*bolt.DB][]func(events.Notice)
}

func watchersOf(db *bolt.DB) []func(events.Notice) {
	watchers.RLock()
	defer watchers.RUnlock()
	return watchers.m[db]
}

// Events returns the event log kept in db.
func Events(db *store.DB) *events.Log {
	b := New(db)
	return events.NewLog(txn.Narrow(b, func(t backend.Tx) events.TxLog { return t.Events() }), b.Watch)
}

// Suppressions returns the suppression list kept in db, with the address
// hash key and clock of suppression.New.
func Suppressions(db *store.DB, key []byte, now func() time.Time) *suppression.Service {
	return suppression.New(txn.Narrow(New(db), func(t backend.Tx) suppression.Tx { return t }), key, now)
}

// Webhooks returns the webhook store kept in db.
func Webhooks(db *store.DB) *webhooks.Service {
	return webhooks.New(txn.Narrow(New(db), func(t backend.Tx) webhooks.Tx { return t }))
}

// Audit returns the admin API's audit log kept in db.
func Audit(db *store.DB) *audit.Log {
	return audit.New(txn.Narrow(New(db), func(t backend.Tx) audit.Rows { return t.Audit() }))
}

// ConsoleUsers returns the console's accounts and sessions kept in db,
// with the seal key and clock of consoleusers.New.
func ConsoleUsers(db *store.DB, sealKey []byte, now func() time.Time) (*consoleusers.Service, error) {
	return consoleusers.New(txn.Narrow(New(db), func(t backend.Tx) consoleusers.Rows { return t.ConsoleUsers() }), sealKey, now)
}
