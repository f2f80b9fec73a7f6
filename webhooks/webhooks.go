package webhooks

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/heedmail/heed/internal/events"
)

// Errors of the Store and the Manager; the admin API maps them to HTTP.
var (
	ErrNotFound = errors.New("webhooks: not found")
	ErrExists   = errors.New("webhooks: already exists")
	// ErrInvalid wraps every refusal of an input (URL, event type, ...).
	ErrInvalid = errors.New("webhooks: invalid")
)

// State is an endpoint's state.
type State string

const (
	// Active endpoints get every event as it is written.
	Active State = "active"
	// Paused endpoints kept failing: the dispatcher sends probes only, and
	// the endpoint's events wait in the log until one succeeds.
	Paused State = "paused"
	// Disabled endpoints get nothing: the tenant disabled it, or it answered
	// 410 Gone. Their events wait until it is enabled again.
	Disabled State = "disabled"
)

// Endpoint is one URL of a tenant that receives its events.
type Endpoint struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	URL    string `json:"url"`
	// Types limits the events sent; empty sends every type.
	Types       []events.Type `json:"types,omitempty"`
	Description string        `json:"description,omitempty"`
	State       State         `json:"state"`
	// Reason says why the endpoint is paused or disabled.
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Secrets sign the deliveries: the newest first; an older one keeps
	// signing alongside until it expires (rotation).
	Secrets []SealedSecret `json:"secrets"`
	// Cursor is the sequence number of the last event the dispatcher has
	// handed off (sent, scheduled for retry, or filtered out); the next
	// events of the tenant come after it.
	Cursor uint64 `json:"cursor"`
}

// SealedSecret is an endpoint secret encrypted at rest.
type SealedSecret struct {
	Sealed []byte `json:"sealed"`
	// Expires is zero for the current secret; a rotated-out secret signs
	// until then.
	Expires time.Time `json:"expires,omitzero"`
	// Prefix is the start of the secret (whsec_ and four characters), to
	// tell secrets apart in the API without showing them.
	Prefix string `json:"prefix"`
}

// Wants reports whether the endpoint takes events of type t.
func (e *Endpoint) Wants(t events.Type) bool {
	return len(e.Types) == 0 || slices.Contains(e.Types, t)
}

// Status is the state of one event's delivery to one endpoint.
type Status string

const (
	// Pending deliveries are scheduled and not yet attempted (a resend).
	Pending Status = "pending"
	// Retrying deliveries failed and are scheduled again.
	Retrying Status = "retrying"
	// Delivered deliveries got a 2xx.
	Delivered Status = "delivered"
	// Failed deliveries are dead letters: every retry failed, or the
	// endpoint answered 410 Gone.
	Failed Status = "failed"
)

// Scheduled reports whether a delivery in status st has a schedule entry
// (Rows keeps the schedule in step with it).
func (st Status) Scheduled() bool { return st == Pending || st == Retrying }

// Attempt is one HTTP request of a delivery.
type Attempt struct {
	At time.Time `json:"at"`
	// StatusCode is the HTTP status (0 when no answer came).
	StatusCode int    `json:"status_code,omitempty"`
	Error      string `json:"error,omitempty"`
	// Response is the start of the answer's body.
	Response   string `json:"response,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// Probe marks an attempt made while the endpoint was paused; it does
	// not count against the event's retries.
	Probe bool `json:"probe,omitempty"`
}

// maxAttemptsKept bounds the attempts a delivery keeps (the newest).
const maxAttemptsKept = 20

// Delivery is one event's delivery to one endpoint, with its attempts.
type Delivery struct {
	Tenant   string      `json:"tenant"`
	Endpoint string      `json:"endpoint"`
	Seq      uint64      `json:"seq"`
	EventID  string      `json:"event_id"`
	Type     events.Type `json:"type"`
	Status   Status      `json:"status"`
	// Retries counts the failed attempts that are not probes; the
	// schedule's length bounds it.
	Retries int `json:"retries"`
	// Resends counts the resends and replays asked for: an attempt that
	// began before the last one does not settle the delivery.
	Resends     int       `json:"resends,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
	Attempts    []Attempt `json:"attempts"`
}

// Job is a delivery the schedule holds: a retry, a resend or a replay.
type Job struct {
	Tenant, Endpoint string
	Seq              uint64
	Due              time.Time
}

// Result is what one attempt changes, recorded in one transaction.
type Result struct {
	Tenant, Endpoint string
	Event            events.Event
	Attempt          Attempt
	// Status is the delivery's new status; NextAttempt goes with Retrying
	// and Pending.
	Status      Status
	NextAttempt time.Time
	// CountRetry adds one to the delivery's retries.
	CountRetry bool
	// Resends is the delivery's Resends when the attempt began.
	Resends int
	// Cursor, when above the endpoint's, is its new cursor.
	Cursor uint64
}

// Store keeps endpoints, deliveries and the retry schedule. Every method
// is scoped by tenant.
type Store interface {
	// CreateEndpoint adds ep, starting its cursor at the newest event;
	// ErrExists if the tenant has an endpoint of that id.
	CreateEndpoint(ctx context.Context, ep *Endpoint) error
	Endpoint(ctx context.Context, tenant, id string) (*Endpoint, error)
	// Endpoints lists a tenant's endpoints, or every tenant's for "".
	Endpoints(ctx context.Context, tenant string) ([]Endpoint, error)
	// UpdateEndpoint applies fn to the stored endpoint and saves it.
	UpdateEndpoint(ctx context.Context, tenant, id string, fn func(*Endpoint) error) (*Endpoint, error)
	// DeleteEndpoint removes an endpoint with its deliveries and schedule.
	DeleteEndpoint(ctx context.Context, tenant, id string) error
	// DeleteTenant removes every endpoint of tenant.
	DeleteTenant(ctx context.Context, tenant string) error

	// Record stores the outcome of one attempt.
	Record(ctx context.Context, r Result) error
	// Handled returns the subset of seqs that already have a delivery to
	// the endpoint (so a restart does not send them twice).
	Handled(ctx context.Context, tenant, endpoint string, seqs []uint64) (map[uint64]bool, error)
	// Delivery returns one delivery.
	Delivery(ctx context.Context, tenant, endpoint string, seq uint64) (*Delivery, error)
	// Deliveries lists an endpoint's deliveries, newest first, of one
	// status or all (""), after an opaque cursor.
	Deliveries(ctx context.Context, tenant, endpoint string, status Status, cursor string, limit int) ([]Delivery, string, error)
	// DeadLetters lists failed deliveries of a tenant, or every tenant's
	// for "", after an opaque cursor.
	DeadLetters(ctx context.Context, tenant, cursor string, limit int) ([]Delivery, string, error)
	// Due returns up to limit schedule entries due at now, oldest first,
	// and when the next one is due (zero: none).
	Due(ctx context.Context, now time.Time, limit int, skip func(Job) bool) ([]Job, time.Time, error)
	// Schedule makes deliveries of evs to an endpoint pending, due at at
	// (resend and replay; Hold while the endpoint is not active), and
	// returns how many it scheduled; now dates the change.
	Schedule(ctx context.Context, tenant, endpoint string, evs []events.Event, at, now time.Time) (int, error)
	// Reschedule makes every scheduled delivery of an endpoint due at at:
	// Hold when it is paused or disabled, now when it recovers.
	Reschedule(ctx context.Context, tenant, endpoint string, at time.Time) error
	// Scheduled counts the deliveries waiting in the schedule (retries,
	// resends, replays, held ones).
	Scheduled(ctx context.Context) (int, error)
	// Held returns up to limit deliveries of an endpoint held at Hold.
	Held(ctx context.Context, tenant, endpoint string, limit int) ([]Job, error)
}

// Hold is the due time of deliveries to a paused or disabled endpoint:
// after everything else in the schedule, so they never hold up another
// endpoint's retries, and all together, so a probe finds one at once.
var Hold = time.Unix(0, 1<<62).UTC()
