// Package backend names what a storage backend is to Heed: something that
// runs transactions (txn.Runner) whose one transaction type, Tx, has the
// transactional face of every domain store. The two implementations are
// internal/backend/boltdb (embedded, the default) and
// internal/backend/postgres; only they import a database driver.
//
// A domain package never imports this package: it declares the faces it
// needs as its own interface and takes a txn.Runner of it, which the
// wiring code makes with txn.Narrow. docs/storage.md has the design and
// the checklist for moving a store onto it.
package backend

import (
	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// Tx is one transaction of a backend, with every store's face. A store
// moved onto the backend adds its face here (and to both backends).
type Tx interface {
	Events() events.TxLog
	Suppressions() suppression.Rows

	// The queue: messages, recipients, bodies, the schedule.
	Queue() queue.Rows

	// The webhook store (endpoints, deliveries, schedule, dead letters)
	// and the admin API's audit log.
	Webhooks() webhooks.Rows
	Audit() audit.Rows

	// The tenant registry (internal/tenant): tenants, credentials, API
	// keys, ip networks, domains, DKIM keys, lists.
	Tenants() tenant.Rows

	// The console's accounts and sessions (issue 19).
	ConsoleUsers() consoleusers.Rows

	// The bounce and complaint rates and the guard's state (issue 18).
	Reputation() reputation.Rows
}

// Backend runs transactions and announces committed events.
type Backend interface {
	txn.Runner[Tx]
	// Watch registers fn to hear of every event once the transaction that
	// wrote it has committed, on the committer: fn must not block.
	Watch(fn func(events.Notice))
	// EventRunner is the runner the event log (events.Log) reads and
	// writes through: on PostgreSQL its View gives each statement a
	// snapshot of its own, so that a read after a cursor can first fix
	// the horizon below which every event is final (see
	// internal/backend/postgres, eventRows). On bbolt it is the Backend.
	EventRunner() txn.Runner[Tx]
}
