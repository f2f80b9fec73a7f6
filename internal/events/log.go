package events

import (
	"context"
	"errors"
	"time"

	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/txn"
)

// TxLog is the event log's face inside a transaction: the rows a storage
// backend keeps (internal/backend/boltdb, internal/backend/postgres). What
// an event means, its id, what an erasure changes and how far the log may
// be out of time order are this package's rules.
//
// Sequence numbers grow in commit order: once any reader has seen an
// event, no event with a lower Seq is committed later, so a reader that
// remembers the last Seq it saw (a webhook endpoint's cursor, the events
// API's after=) never passes over one. They may have gaps.
type TxLog interface {
	// Insert stores ev under the next sequence number, which it sets in
	// ev.Seq, at the latest when the transaction commits (PostgreSQL
	// sends the insert with the transaction's next statement); ev.ID is
	// set already.
	Insert(ev *Event) error
	// Get returns the event at seq, false when there is none (never
	// written or purged).
	Get(seq uint64) (Event, bool, error)
	// Tenant returns up to limit events of tenant with Seq > after, in Seq
	// order.
	Tenant(tenant string, after uint64, limit int) ([]Event, error)
	// CountTenant counts tenant's events with Seq > after, stopping at max.
	CountTenant(tenant string, after uint64, max int) (int, error)
	// Last returns a sequence number at or above every event committed so
	// far and below every event inserted later (0 for an empty log).
	Last() (uint64, error)
	// SeqBefore returns a sequence number below every event dated at or
	// after t. A backend may rely on the log being in time order to
	// within TimeSlack (the caller has allowed for it in t).
	SeqBefore(t time.Time) (uint64, error)
	// Mentioning returns up to limit events with Seq > after whose JSON
	// form mentions addr by ContainsFold, in Seq order.
	Mentioning(addr string, after uint64, limit int) ([]Event, error)
	// Replace rewrites the event at ev.Seq, reporting false when it is
	// gone.
	Replace(ev Event) (bool, error)
	// DeleteTenant deletes up to max events of tenant and returns how many.
	DeleteTenant(tenant string, max int) (int, error)
	// Purge deletes up to max events dated before cutoff with Seq > from,
	// oldest first, and returns how many and where to go on (0: done). It
	// may stop at an event dated TimeSlack after cutoff: the rest of the
	// log is younger.
	Purge(cutoff time.Time, from uint64, max int) (n int, next uint64, err error)

	// For heed storage copy, which moves a stopped database to another
	// backend with every sequence number kept (webhook cursors and API
	// clients' after= hold them).

	// All returns up to limit events of every tenant with Seq > after,
	// in Seq order.
	All(after uint64, limit int) ([]Event, error)
	// Restore stores evs, in ascending Seq order and above every event
	// there, each at its own Seq; the next Insert numbers above them and
	// above last (the source's Last, which may be above its newest event
	// left: a number once given is never given again).
	Restore(evs []Event, last uint64) error
}

// Append writes ev into the outbox inside tx, assigning its Seq and, when
// empty, its ID. Callers pass the transaction of the state change the event
// reports.
func Append(tx TxLog, ev *Event) error {
	if ev.ID == "" {
		ev.ID = "evt_" + ids.New(ev.Time)
	}
	return tx.Insert(ev)
}

// Log is the event log over a storage backend: the Reader, Source and
// Recorder the rest of Heed uses, and the privacy and retention jobs.
//
// Lifecycle: built once at start over an open backend (NewLog), shared by
// every goroutine; it is not closed itself, the backend under it is.
type Log struct {
	tx    txn.Runner[TxLog]
	watch func(func(Notice))
}

// NewLog returns the log kept by tx. watch registers a function to be
// called, on the committer, with a notice of every event once its
// transaction has committed (the backend's; nil: Watch does nothing).
func NewLog(tx txn.Runner[TxLog], watch func(func(Notice))) *Log {
	return &Log{tx: tx, watch: watch}
}

var (
	_ Source   = (*Log)(nil)
	_ Recorder = (*Log)(nil)
)

// Watch implements Source: fn is called with a notice of every event once
// the transaction that wrote it has committed (a rolled-back one calls
// nothing). fn runs on the committer and must not block.
func (l *Log) Watch(fn func(Notice)) {
	if l.watch != nil {
		l.watch(fn)
	}
}

// Events implements Reader.
func (l *Log) Events(ctx context.Context, tenant string, after uint64, limit int) ([]Event, error) {
	var out []Event
	err := l.tx.View(ctx, func(tx TxLog) error {
		var err error
		out, err = tx.Tenant(tenant, after, limit)
		return err
	})
	return out, err
}

// Record writes one event that reports no state change of its own (a
// transient delivery report, say) in a transaction of its own.
func (l *Log) Record(ctx context.Context, ev *Event) error {
	return l.tx.Update(ctx, func(tx TxLog) error {
		e := *ev // Append assigns Seq and ID; the function may run again
		return Append(tx, &e)
	})
}

// ErrNotFound is returned by Event for a sequence number the tenant has no
// event at (never written, purged, or another tenant's).
var ErrNotFound = errors.New("events: no such event")

// Event implements Source: the event of tenant at seq.
func (l *Log) Event(ctx context.Context, tenant string, seq uint64) (Event, error) {
	var ev Event
	err := l.tx.View(ctx, func(tx TxLog) error {
		e, ok, err := tx.Get(seq)
		if err != nil {
			return err
		}
		if !ok || e.Data.Tenant != tenant {
			return ErrNotFound
		}
		ev = e
		return nil
	})
	return ev, err
}

// Last implements Source: the sequence number of the newest event of any
// tenant (0 when there is none).
func (l *Log) Last(ctx context.Context) (uint64, error) {
	var seq uint64
	err := l.tx.View(ctx, func(tx TxLog) error {
		var err error
		seq, err = tx.Last()
		return err
	})
	return seq, err
}

// Since implements Reader.
func (l *Log) Since(ctx context.Context, t time.Time) (uint64, error) {
	var seq uint64
	err := l.tx.View(ctx, func(tx TxLog) error {
		var err error
		seq, err = tx.SeqBefore(t.Add(-TimeSlack))
		return err
	})
	return seq, err
}

// deleteChunk bounds the events one transaction of DeleteTenant or Purge
// deletes, so that a large log never holds the writers (and the SMTP 250s
// behind them) for long.
const deleteChunk = 10000

// DeleteTenant implements Reader, in transactions of at most 10,000 events.
func (l *Log) DeleteTenant(ctx context.Context, tenant string) error {
	for {
		n := 0
		err := l.tx.Update(ctx, func(tx TxLog) error {
			var err error
			n, err = tx.DeleteTenant(tenant, deleteChunk)
			return err
		})
		if err != nil || n < deleteChunk {
			return err
		}
	}
}

// CountAfter implements Source.
func (l *Log) CountAfter(ctx context.Context, tenant string, after uint64, max int) (int, error) {
	n := 0
	err := l.tx.View(ctx, func(tx TxLog) error {
		var err error
		n, err = tx.CountTenant(tenant, after, max)
		return err
	})
	return n, err
}
