package webhooks

import (
	"time"

	"github.com/heedmail/heed/internal/events"
)

// Rows is the webhook store's face inside a transaction: the endpoints,
// deliveries, retry schedule and dead letters a storage backend keeps
// (internal/backend/boltdb, internal/backend/postgres). What a result
// changes in a delivery, when a resend stands, where a paused endpoint's
// deliveries wait, cursors and erasure are this package's rules (Service).
//
// A backend keeps two indexes of the deliveries in step with PutDelivery:
// the schedule (a delivery is in it exactly while Pending or Retrying, at
// its NextAttempt) and the dead letters (exactly while Failed). Every
// method names its tenant but those of the dispatcher and the jobs that
// span tenants (Endpoints(""), Due, CountScheduled, DeadLetters(""),
// PurgeDeliveries, Mentioning).
type Rows interface {
	// Endpoint returns tenant's endpoint id, false when there is none.
	Endpoint(tenant, id string) (Endpoint, bool, error)
	// Endpoints returns tenant's endpoints (every tenant's for ""), by
	// tenant then id.
	Endpoints(tenant string) ([]Endpoint, error)
	// PutEndpoint stores ep, replacing the endpoint of its tenant and id.
	PutEndpoint(ep *Endpoint) error
	// DeleteEndpoint removes tenant's endpoint id (not its deliveries),
	// reporting false when there was none.
	DeleteEndpoint(tenant, id string) (bool, error)

	// Delivery returns the delivery of event seq to an endpoint, false
	// when there is none.
	Delivery(tenant, endpoint string, seq uint64) (Delivery, bool, error)
	// PutDelivery stores d, replacing the delivery of its key, and moves
	// its schedule entry and dead-letter mark to match its status.
	PutDelivery(d *Delivery) error
	// Handled returns the subset of seqs that have a delivery.
	Handled(tenant, endpoint string, seqs []uint64) (map[uint64]bool, error)
	// Deliveries returns up to limit deliveries of an endpoint of status
	// (any for ""), newest first, from seq from down, examining at most
	// scan rows; more reports rows left, next the seq to go on from.
	Deliveries(tenant, endpoint string, status Status, from uint64, limit, scan int) (ds []Delivery, next uint64, more bool, err error)
	// DeadLetters returns up to limit failed deliveries of tenant (every
	// tenant's for ""), in key order (tenant, endpoint, seq), after the
	// delivery at after (nil: from the first); more reports others left.
	DeadLetters(tenant string, after *Job, limit int) (ds []Delivery, more bool, err error)
	// DeleteDeliveries deletes up to max deliveries of an endpoint (of
	// every endpoint of tenant for endpoint ""), with their schedule
	// entries and dead-letter marks, and returns how many.
	DeleteDeliveries(tenant, endpoint string, max int) (int, error)
	// PurgeDeliveries examines up to max deliveries from the opaque
	// position from ("": the first), deletes those neither Pending nor
	// Retrying last updated before cutoff, and returns how many it deleted
	// and where to go on ("": done).
	PurgeDeliveries(cutoff time.Time, from string, max int) (n int, next string, err error)
	// Mentioning examines up to max deliveries from the opaque position
	// from ("": the first) and returns those whose JSON form mentions
	// addr by events.ContainsFold, and where to go on ("": done).
	Mentioning(addr, from string, max int) (ds []Delivery, next string, err error)

	// Due returns up to limit schedule entries due at now for which skip
	// (if not nil) is false, oldest first, and when the next entry not due
	// is (zero: none, or Hold); a backend may examine a bounded number.
	Due(now time.Time, limit int, skip func(Job) bool) ([]Job, time.Time, error)
	// Jobs returns the schedule entries of an endpoint.
	Jobs(tenant, endpoint string) ([]Job, error)
	// Held returns up to limit schedule entries of an endpoint at Hold.
	Held(tenant, endpoint string, limit int) ([]Job, error)
	// CountScheduled counts the schedule's entries.
	CountScheduled() (int, error)
}

// Tx is what the webhook store needs in one transaction: its rows, and
// the event log, whose Last starts a new endpoint's cursor.
type Tx interface {
	Webhooks() Rows
	Events() events.TxLog
}
