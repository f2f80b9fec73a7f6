// Package queue is Heed's durable spool and its delivery workers.
//
// A message is stored once (its body in the database or, on bbolt when
// larger than Spool.InlineMax, in a spool file; its envelope in the
// database) with one delivery row per recipient. The 250 after DATA is
// sent only once Enqueue has returned: a body file and its directory are
// fsynced first, and the record, its recipients and their events are
// committed in one transaction of the storage backend (Records over
// Tx), with concurrent sessions sharing commits.
//
// One scheduler loop (no goroutine per message) reads an index of next
// attempts and hands due recipients to a bounded pool of workers, with a cap
// per destination domain. Each attempt checks the recipient against the
// suppression list (again: an opt-out recorded while a message waits for a
// retry stops it), renders and DKIM-signs the copy for its recipient, sends
// it through a Transport, and records the outcome and its event in one
// transaction:
//
//   - suppressed: final, never sent, a message.suppressed event.
//   - no usable signing key or a database error: retried like a 4xx;
//     Heed never sends unsigned mail for a domain that has a key.
//   - 2xx: delivered.
//   - 5xx: bounced at once (RFC 5321 section 4.2.1: permanent), with the
//     reason and verdict internal/report gives the reply. A hard bounce
//     (the address is gone) suppresses the address for every list of the
//     tenant; a soft one joins the address's soft-bounce history, which
//     suppresses when it repeats (suppression.SoftRule). A delivery
//     resets that history. All in the transaction of the outcome.
//   - 4xx or no answer: deferred and retried on the schedule of Backoff
//     until max_queue_lifetime, then bounced as expired (soft, and not
//     counted: the last reply was temporary).
//
// Delivery is per recipient with its own VERP envelope sender, so every
// bounce names exactly one message and recipient. A crash at any instant
// either leaves no trace of a message (and no 250 was sent) or all of it;
// an attempt in flight at a crash is retried, so a recipient may receive a
// message twice but never zero times.
package queue

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/report"
)

// State of one recipient's delivery.
type State string

// States. Delivered, Bounced and Suppressed are final.
const (
	Queued    State = "queued"
	Deferred  State = "deferred"
	Delivered State = "delivered"
	Bounced   State = "bounced"
	// Suppressed: the recipient is on the suppression list for the
	// message's list (found at accept time or at an attempt); not sent.
	Suppressed State = "suppressed"
)

// Final reports whether no further attempt will be made.
func (s State) Final() bool { return s == Delivered || s == Bounced || s == Suppressed }

// Message is the envelope and metadata of one accepted message.
type Message struct {
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	List       string    `json:"list"`
	Credential string    `json:"credential,omitempty"`
	From       string    `json:"from"`
	HeaderFrom string    `json:"header_from,omitempty"`
	Size       int64     `json:"size"`
	ReceivedAt time.Time `json:"received_at"`
	// Client describes the submitting session for the Received field.
	Client Client `json:"client"`
	// Pending counts recipients not yet final; at zero the body is removed.
	Pending int `json:"pending"`
	// Inline is true when the body is stored in the database, not the
	// spool; Body carries it to Add.
	Inline     bool        `json:"inline,omitempty"`
	Body       []byte      `json:"-"`
	Recipients []Recipient `json:"recipients,omitempty"`
}

// Client is the submitting SMTP session.
type Client struct {
	Helo string `json:"helo,omitempty"`
	Addr string `json:"addr,omitempty"`
	TLS  bool   `json:"tls,omitempty"`
	Auth bool   `json:"auth,omitempty"`
}

// Recipient is one delivery row.
type Recipient struct {
	Index       int       `json:"index"`
	Address     string    `json:"address"`
	State       State     `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastReply   string    `json:"last_reply,omitempty"`
	// Reason is the suppression reason of a Suppressed recipient.
	Reason    string    `json:"reason,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Job is one due delivery: a recipient of a message.
type Job struct {
	MessageID string
	Index     int
	Domain    string
	// Due is the schedule entry's time; it identifies the entry to remove.
	Due time.Time
}

// Outcome is what an attempt decided for one recipient.
type Outcome struct {
	State State
	Reply string
	// Reason is the suppression reason, for Suppressed.
	Reason string
	// Bounce says why a Bounced outcome failed.
	Bounce      Bounce
	NextAttempt time.Time // for Deferred
	At          time.Time
}

// Bounce is why a recipient bounced, as internal/report reads the reply
// (the rules a DSN is read by, so a reply at delivery and a later report
// agree).
type Bounce struct {
	Reason  report.Reason
	Verdict report.Verdict // Hard or Soft
	Status  string         // the RFC 3463 code, "" if none
	// Remote is true when the recipient's server refused this attempt
	// with a 5xx. Only such a bounce suppresses (Hard) or counts towards
	// escalation (Soft): an expired message or Heed's own refusal says
	// nothing about the address.
	Remote bool
}

// ErrNotFound is returned for an unknown message.
var ErrNotFound = errors.New("message not found")

// Store keeps messages, delivery rows and the schedule. Implementations
// write the events of every change in the same transaction.
type Store interface {
	// Add records an accepted message whose body is already durable, its
	// recipients all due at msg.ReceivedAt, and a message.accepted event
	// per recipient; a recipient already marked Suppressed is recorded as
	// final with a message.suppressed event instead. It returns once all
	// of it is on disk.
	Add(ctx context.Context, msg *Message) error
	// Due returns up to limit jobs due at or before now, earliest first,
	// skipping those for which skip returns true, and the time of the
	// first job not yet due (zero if none).
	Due(ctx context.Context, now time.Time, limit int, skip func(Job) bool) ([]Job, time.Time, error)
	// Load returns the message of job (without its recipient list, with
	// its Body when stored inline) and the job's recipient, from one read.
	Load(ctx context.Context, job Job) (*Message, Recipient, error)
	// Message returns a message with its recipients.
	Message(ctx context.Context, id string) (*Message, error)
	// Record stores the outcome of an attempt on job and its event, and
	// reports whether the message has no pending recipient left; an
	// inline body is deleted in the same transaction.
	Record(ctx context.Context, job Job, out Outcome) (finished bool, err error)
	// NeedsBody reports whether the spool file of message id is still
	// needed: the message is recorded, its body is not in the database,
	// and a recipient is pending. The start-up sweep removes the others
	// (uncommitted messages, and finished ones a crash left behind).
	NeedsBody(id string) bool
	// Hold puts job's schedule entry off until until, without an attempt,
	// an event or a change of its state (a paused tenant's mail).
	Hold(ctx context.Context, job Job, until time.Time) error
}

// SendingDomain is the domain a message counts under in the reputation
// rates: its From: header's, else its envelope sender's, lower-cased; ""
// when neither has one.
func (m *Message) SendingDomain() string {
	from := m.HeaderFrom
	if from == "" {
		from = m.From
	}
	return strings.ToLower(domainOf(from))
}
