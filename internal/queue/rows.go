package queue

import (
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/suppression"
)

// Rows is the queue's face inside a transaction: the rows a storage
// backend keeps (internal/backend/boltdb, internal/backend/postgres).
// What a message's states mean, when a body goes, what an outcome does to
// the suppression list and what an erasure changes are this package's
// rules; a backend keeps records, recipients, bodies and the schedule.
//
// Message ids sort by acceptance time (internal/ids); every backend keeps
// them in byte order, so "after id" cursors and Purge's early stop hold on
// each.
type Rows interface {
	// Message returns the record of message id, without recipients or
	// body; false when there is none. A record that cannot be decoded is
	// an error.
	Message(id string) (Message, bool, error)
	// PutMessage stores m's record (not its Recipients or Body),
	// replacing one of the same id.
	PutMessage(m *Message) error
	// Messages returns up to limit records with ids after after ("" from
	// the first), in id order.
	Messages(after string, limit int) ([]Message, error)
	// DeleteMessage deletes the record of message id, its recipients and
	// its stored body.
	DeleteMessage(id string) error
	// TenantMessages returns up to limit records of tenant with ids after
	// after ("" from the first), in id order, and the id to go on after
	// ("": done). Like Mentioning, it may stop early with a cursor.
	TenantMessages(tenant, after string, limit int) (ms []Message, next string, err error)

	// Recipient returns recipient index of message id, false when none.
	Recipient(id string, index int) (Recipient, bool, error)
	// Recipients returns the recipients of message id, by index.
	Recipients(id string) ([]Recipient, error)
	// PutRecipient stores r as recipient r.Index of message id.
	PutRecipient(id string, r *Recipient) error
	// Mentioning returns up to limit recipients after after (nil: from the
	// first), in (message id, index) order, whose stored row mentions addr
	// by events.ContainsFold, and where to go on (nil: done). A backend
	// may examine a bounded number of rows per call and then return fewer
	// than limit with a next cursor.
	Mentioning(addr string, after *Cursor, limit int) ([]Delivery, *Cursor, error)

	// Body returns the body of message id kept in the database (an Inline
	// message's), false when there is none.
	Body(id string) ([]byte, bool, error)
	// PutBody stores body as the body of message id.
	PutBody(id string, body []byte) error
	// DeleteBody deletes the stored body of message id, if any.
	DeleteBody(id string) error
	// BodiesMentioning returns up to limit ids after after ("" from the
	// first), in id order, of messages whose stored body mentions addr by
	// events.ContainsFold, and the id to go on after ("": done). Like
	// Mentioning, it may stop early with a cursor.
	BodiesMentioning(addr, after string, limit int) (ids []string, next string, err error)

	// Schedule adds the entry of j: its recipient is due at j.Due.
	Schedule(j Job) error
	// Unschedule removes the entry of j (of j.Due), if it is there.
	Unschedule(j Job) error
	// Due calls fn with the schedule's entries in order (Due, then message
	// id, then index) until fn returns false or max entries were passed.
	//
	// Several nodes (issue 17) will claim entries instead of reading
	// them: on PostgreSQL a SELECT ... FOR UPDATE SKIP LOCKED of the due
	// entries with a lease column, in Update.
	Due(max int, fn func(Job) bool) error
	// Depth counts the schedule's entries.
	Depth() (int, error)

	// Attempt returns what an attempt needs in one read: the record of
	// message id, its recipient index and, when withBody, the body kept
	// in the database (nil when none); ok is false when the message or
	// the recipient is missing (rec tells which: false when the record
	// is). In a writing transaction the record and the recipient are the
	// transaction's to write back (PostgreSQL locks both rows).
	Attempt(id string, index int, withBody bool) (m Message, r Recipient, body []byte, rec, ok bool, err error)
}

// Cursor is a place in the delivery rows: after recipient Index of
// message MessageID.
type Cursor struct {
	MessageID string
	Index     int
}

// Delivery is one recipient row with the id of its message.
type Delivery struct {
	MessageID string
	Recipient Recipient
}

// Tx is what the queue writes in one transaction: its rows, the events of
// what it records, and the suppression list a bounce or a delivery
// changes (suppression.Tx is part of it, so the queue hands it to
// suppression.Service.BounceTx as it is).
type Tx interface {
	Queue() Rows
	Events() events.TxLog
	Suppressions() suppression.Rows
	// Reputation is the bounce and complaint counters an outcome adds to
	// (Records.KeepRates).
	Reputation() reputation.Rows
}
