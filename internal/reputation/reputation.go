// Package reputation keeps each tenant's bounce and complaint rates and
// guards the relay's shared addresses and domains with them: a tenant
// whose rates pass the warning level is told (tenant.reputation_warning),
// one whose rates pass the pause level is paused (tenant.paused) until an
// operator resumes it (tenant.resumed).
//
// The rates are counters in hourly buckets per tenant, sending domain and
// hour, added to in the transaction that records what they count (the
// queue's outcome of an attempt, the suppression of a complaint or of a
// hard bounce reported later by a DSN), so they survive a restart and
// never disagree with the events. A rolling window sums at most 168
// buckets of a tenant per domain: reading is cheap.
//
//   - bounce rate = hard bounces (at delivery, or reported later by a
//     DSN) ÷ delivery attempts that reached a final state (delivered or
//     bounced; a suppressed recipient was not tried);
//   - complaint rate = complaints ÷ delivered.
//
// The figures are those the large mailbox providers judge a sender by:
// Gmail's and Yahoo's bulk sender rules (February 2024) keep the spam
// complaint rate under 0.3% and ask for under 0.1%; Amazon SES reviews an
// account at a 5% bounce or 0.1% complaint rate. docs/deliverability.md
// explains the thresholds and what a paused tenant sees.
//
// The package is a domain store over a storage backend (Rows, its face
// inside a transaction; docs/storage.md): the rules (what counts, what
// a window sums, when the guard acts) are here, the rows in
// internal/backend/boltdb and internal/backend/postgres.
package reputation

import (
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/suppression"
)

// Counts are the counters of one bucket, or their sum over a window.
type Counts struct {
	// Final counts delivery attempts that reached a final state
	// (delivered or bounced, soft or hard).
	Final int64 `json:"final"`
	// HardBounces counts the final ones that were hard bounces: at
	// delivery, or reported later by a DSN about an attempt the remote
	// server had accepted (counted Final and Delivered at its 250; the
	// DSN adds the hard bounce only, in the hour it arrived).
	HardBounces int64 `json:"hard_bounces"`
	// Delivered counts the final ones that were delivered.
	Delivered int64 `json:"delivered"`
	// Complaints counts complaints (ARF reports) recorded.
	Complaints int64 `json:"complaints"`
}

// Add returns c + d.
func (c Counts) Add(d Counts) Counts {
	return Counts{c.Final + d.Final, c.HardBounces + d.HardBounces, c.Delivered + d.Delivered, c.Complaints + d.Complaints}
}

// BounceRate is HardBounces ÷ Final (0 with no attempt).
func (c Counts) BounceRate() float64 { return ratio(c.HardBounces, c.Final) }

// ComplaintRate is Complaints ÷ Delivered (0 with nothing delivered).
func (c Counts) ComplaintRate() float64 { return ratio(c.Complaints, c.Delivered) }

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Hour is the bucket of t: hours since the Unix epoch, in UTC.
func Hour(t time.Time) int64 { return t.Unix() / 3600 }

// Bucket is one hour of one tenant's mail from one sending domain.
type Bucket struct {
	Domain string
	Hour   int64
	Counts Counts
}

// State is what the guard holds of one tenant: whether it is paused, and
// which rates it has been warned of (so that a warning goes out once per
// crossing, not once per message).
type State struct {
	Tenant string `json:"tenant"`
	Paused bool   `json:"paused"`
	// PausedAt, PausedBy ("guard", or the operator's audit actor) and
	// Reason say when, by whom and why; Metric is "bounce" or
	// "complaint" for a pause by the guard.
	PausedAt time.Time `json:"paused_at,omitzero"`
	PausedBy string    `json:"paused_by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Metric   string    `json:"metric,omitempty"`
	// ResumedAt is the last resume: the guard judges only the hours after
	// it, so that the mail that caused a pause does not pause the tenant
	// again the moment it is resumed.
	ResumedAt time.Time `json:"resumed_at,omitzero"`
	// Warned are the metrics ("bounce", "complaint") whose warning level
	// the tenant is above, as last judged.
	Warned []string `json:"warned,omitempty"`
}

func (s State) warned(metric string) bool {
	for _, m := range s.Warned {
		if m == metric {
			return true
		}
	}
	return false
}

// Rows is the face of the rates and the guard's state inside a
// transaction: the rows a storage backend keeps.
type Rows interface {
	// Add adds c to the bucket of tenant, domain and hour, creating it.
	Add(tenant, domain string, hour int64, c Counts) error
	// Buckets returns the buckets of tenant with Hour >= from, in any
	// order.
	Buckets(tenant string, from int64) ([]Bucket, error)
	// Prune deletes up to limit buckets (of any tenant) with Hour <
	// before and reports how many it deleted.
	Prune(before int64, limit int) (int, error)

	// State returns the guard's state of tenant, false when none.
	State(tenant string) (State, bool, error)
	// PutState stores s, replacing the state of s.Tenant.
	PutState(s State) error
	// Paused returns the states of every paused tenant.
	Paused() ([]State, error)

	// DeleteTenant deletes every bucket and the state of tenant.
	DeleteTenant(tenant string) error
}

// Tx is what the rates and the guard write in one transaction: the rows,
// the events they write beside them (tenant.paused, ...) and, for a
// complaint or a DSN's hard bounce, the suppression it adds
// (suppression.Tx is part of it).
type Tx interface {
	Reputation() Rows
	Events() events.TxLog
	Suppressions() suppression.Rows
}

// Count adds what one recorded outcome means for the rates, in the
// transaction that records it: a final attempt, delivered or a hard
// bounce. The queue calls it (queue.Records.KeepRates).
func Count(rows Rows, tenant, domain string, at time.Time, delivered, hardBounce bool) error {
	c := Counts{Final: 1}
	if delivered {
		c.Delivered = 1
	}
	if hardBounce {
		c.HardBounces = 1
	}
	return rows.Add(tenant, domain, Hour(at), c)
}
