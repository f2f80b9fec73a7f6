// Package events is the vocabulary of what happens to mail in Heed and the
// outbox it is written to. Every state change writes its event in the same
// transaction as the change (the outbox pattern), so the webhooks dispatcher
// never misses one and never invents one.
package events

import (
	"context"
	"time"
)

// Type names an event; the names are the public webhook contract.
type Type string

// The event types of contract.md.
const (
	MessageAccepted       Type = "message.accepted"
	MessageDelivered      Type = "message.delivered"
	MessageDeferred       Type = "message.deferred"
	MessageBounced        Type = "message.bounced"
	MessageSuppressed     Type = "message.suppressed"
	RecipientUnsubscribed Type = "recipient.unsubscribed"
	RecipientResubscribed Type = "recipient.resubscribed"
	RecipientComplained   Type = "recipient.complained"
	SuppressionAdded      Type = "suppression.added"
	SuppressionRemoved    Type = "suppression.removed"
	// ReportFeedback is an ARF report about one of the tenant's messages
	// that is not a complaint (auth-failure, not-spam, virus): it
	// suppresses nobody; Data.Reason is its feedback type.
	ReportFeedback Type = "report.feedback"

	// The reputation guard's (package reputation): a rate passed its
	// warning level, a tenant was paused (its mail held and refused) and
	// resumed. Data.Rate has the figures, Data.Reason the sentence.
	TenantReputationWarning Type = "tenant.reputation_warning"
	TenantPaused            Type = "tenant.paused"
	TenantResumed           Type = "tenant.resumed"
	// DomainReadinessFailed: marketing mail was sent from a domain whose
	// readiness report has a failing check (at most once a day per
	// tenant and domain); Data.Domain names it, Data.Reason the checks.
	DomainReadinessFailed Type = "domain.readiness_failed"
)

// AllTypes lists every event type, in the order of contract.md, then
// the ones docs/webhooks.md adds.
var AllTypes = []Type{
	MessageAccepted, MessageDelivered, MessageDeferred, MessageBounced, MessageSuppressed,
	RecipientUnsubscribed, RecipientResubscribed, RecipientComplained,
	SuppressionAdded, SuppressionRemoved,
	ReportFeedback,
	TenantReputationWarning, TenantPaused, TenantResumed, DomainReadinessFailed,
}

// Event is one thing that happened, for one tenant.
type Event struct {
	// ID is unique and stable: the webhook-id of every delivery attempt.
	ID   string    `json:"id"`
	Seq  uint64    `json:"seq"`
	Type Type      `json:"type"`
	Time time.Time `json:"timestamp"`
	Data Data      `json:"data"`
}

// Data is the payload of an event.
type Data struct {
	Tenant    string `json:"tenant"`
	MessageID string `json:"message_id,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	List      string `json:"list,omitempty"`
	// Reply is the remote SMTP reply, or Heed's own reason, where there is one.
	Reply    string `json:"reply,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	// NextAttempt is when a deferred delivery is tried again.
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	// Reason is why: a suppression's reason on suppression and
	// message.suppressed events, the bounce's reason ("user-unknown",
	// "mailbox-full", ... see docs/bounces.md) on message.bounced.
	Reason  string `json:"reason,omitempty"`
	Channel string `json:"channel,omitempty"`
	// BounceType is "hard" (the address is gone) or "soft" on
	// message.bounced.
	BounceType string `json:"bounce_type,omitempty"`
	// Domain is the sending domain of a domain.* event, and of a
	// tenant.* event about one domain.
	Domain string `json:"domain,omitempty"`
	// Rate is what a tenant.reputation_warning or tenant.paused event of
	// the guard measured (nil on every other event).
	Rate *Rate `json:"rate,omitempty"`
}

// Rate is one measured rate and the level it was judged against.
type Rate struct {
	// Metric is "bounce" (hard bounces ÷ final attempts) or "complaint"
	// (complaints ÷ delivered).
	Metric string `json:"metric"`
	// Window is the rolling window the counts are of ("24h").
	Window string  `json:"window"`
	Value  float64 `json:"value"`
	// Count and Of are the counts behind Value (hard bounces and final
	// attempts, or complaints and deliveries).
	Count     int64   `json:"count"`
	Of        int64   `json:"of"`
	Threshold float64 `json:"threshold"`
}

// Recorder writes an event that is not part of another state change.
type Recorder interface {
	Record(ctx context.Context, ev *Event) error
}

// Reader reads the event log of one tenant.
type Reader interface {
	// Events returns up to limit events of tenant with Seq > after, oldest
	// first.
	Events(ctx context.Context, tenant string, after uint64, limit int) ([]Event, error)
	// Since returns a sequence number at or before every event that
	// happened at t or later (within TimeSlack: an event's time is when it
	// happened, written a moment later), to start reading from.
	Since(ctx context.Context, t time.Time) (uint64, error)
	// DeleteTenant removes every event of tenant (the tenant was deleted:
	// a new tenant of the same id must not see them).
	DeleteTenant(ctx context.Context, tenant string) error
}

// TimeSlack bounds how much earlier than a later-written event an event
// may be dated: the time between an event happening and its commit.
const TimeSlack = 5 * time.Minute

// Source is what the webhooks dispatcher reads: a tenant's events in order,
// one event by its sequence number, the newest sequence number, and a
// notice of each tenant's new events as they are committed.
type Source interface {
	Reader
	Event(ctx context.Context, tenant string, seq uint64) (Event, error)
	Last(ctx context.Context) (uint64, error)
	// CountAfter counts tenant's events with Seq > after, stopping at max.
	CountAfter(ctx context.Context, tenant string, after uint64, max int) (int, error)
	Watch(fn func(Notice))
}

// Notice is what a watcher of the log hears of each event committed.
type Notice struct {
	Tenant  string
	Type    Type
	Channel string
	// Remote marks a notice of events another node committed (several
	// nodes on one PostgreSQL): it names only the tenant, and says only
	// that the tenant has new events to read. Counters of what this node
	// did skip it.
	Remote bool
}
