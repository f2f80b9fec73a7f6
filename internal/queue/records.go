package queue

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
)

// Records is the queue's Store over a storage backend: messages, their
// recipients, bodies kept in the database and the schedule, written with
// their events (and suppressions) in one transaction of the backend.
//
// Lifecycle: built once at start (internal/backend/boltdb.Queue,
// internal/backend/postgres.Queue), shared by every goroutine; the backend
// under it is closed by its owner.
type Records struct {
	tx    txn.Runner[Tx]
	sup   *suppression.Service
	spool *Spool
	// rates is set by KeepRates: outcomes count in the reputation rates,
	// and the tenant is named to it after the commit.
	rates func(tenant string)
	// ratesOff suspends KeepRates (PauseRates): only the benchmark that
	// prices the rates sets it, on a relay that must otherwise stay whole.
	ratesOff atomic.Bool
	// lease is set by Leases: Due claims what it returns (several nodes).
	lease *leases
}

// NewRecords returns the queue kept by tx.
func NewRecords(tx txn.Runner[Tx]) *Records { return &Records{tx: tx} }

// SuppressHardBounces makes Record act on bounces in the transaction that
// records them: a hard bounce adds a bounce suppression (every list of the
// tenant), a soft one joins the address's soft-bounce history (which
// suppresses by sup's SoftRule), and a delivery resets that history. sup
// must be kept by the same backend: its rows are written through the
// queue's transaction.
func (s *Records) SuppressHardBounces(sup *suppression.Service) *Records {
	s.sup = sup
	return s
}

// KeepRates makes Record add each final attempt to the tenant's bounce
// and complaint counters (package reputation) in the transaction of the
// outcome, and call touched with the tenant after the commit (the
// guard's Touch; nil for none).
func (s *Records) KeepRates(touched func(tenant string)) *Records {
	if touched == nil {
		touched = func(string) {}
	}
	s.rates = touched
	return s
}

// PauseRates stops (true) or restarts (false) the counting KeepRates
// asked for, without rebuilding the relay: BenchmarkReputationCost runs
// the same relay shape with the rates kept and not kept. Outcomes
// recorded while paused never count, so a relay that serves mail must
// leave it alone.
func (s *Records) PauseRates(off bool) { s.ratesOff.Store(off) }

var _ Store = (*Records)(nil)

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// Add implements Store: the message, its recipients, its stored body and
// their events in one transaction, events last (on PostgreSQL the event
// lock is held from the first event to COMMIT).
func (s *Records) Add(ctx context.Context, msg *Message) error {
	head := *msg
	head.Recipients, head.Body = nil, nil
	head.Pending = 0
	for _, r := range msg.Recipients {
		if r.State != Suppressed {
			head.Pending++
		}
	}
	// A message whose every recipient is suppressed needs no body.
	head.Inline = msg.Body != nil && head.Pending > 0
	// A new message's rows are its own: concurrent accepts may commit
	// together (txn.Batch).
	return txn.Batch(ctx, s.tx, "accept", msg.ID, func(tx Tx) error {
		rows := tx.Queue()
		if err := rows.PutMessage(&head); err != nil {
			return err
		}
		if head.Inline {
			if err := rows.PutBody(msg.ID, msg.Body); err != nil {
				return err
			}
		}
		evs := make([]events.Event, 0, len(msg.Recipients))
		for _, r := range msg.Recipients {
			ev := events.Event{Type: events.MessageAccepted, Time: msg.ReceivedAt, Data: events.Data{
				Tenant: msg.Tenant, MessageID: msg.ID, Recipient: r.Address, List: msg.List,
			}}
			if r.State == Suppressed {
				// Found on the suppression list at accept time: final at
				// once, and the app hears why instead of "accepted".
				ev.Type, ev.Data.Reason, ev.Data.Reply = events.MessageSuppressed, r.Reason, r.LastReply
			} else {
				r.State = Queued
				if err := rows.Schedule(Job{MessageID: msg.ID, Index: r.Index, Domain: domainOf(r.Address), Due: msg.ReceivedAt}); err != nil {
					return err
				}
			}
			r.UpdatedAt = msg.ReceivedAt
			if err := rows.PutRecipient(msg.ID, &r); err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		for i := range evs {
			if err := events.Append(tx.Events(), &evs[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Due implements Store.
func (s *Records) Due(ctx context.Context, now time.Time, limit int, skip func(Job) bool) (jobs []Job, next time.Time, err error) {
	// Entries in flight or for a domain at its cap are skipped; the scan
	// stops after a bounded number of them so that a large backlog for
	// one busy domain costs little per wake-up (the workers' completions
	// wake the scheduler again).
	if s.lease != nil {
		return s.claim(ctx, now, limit, skip)
	}
	maxScan := 4*limit + 1024
	err = s.tx.View(ctx, func(tx Tx) error {
		jobs, next = nil, time.Time{}
		return tx.Queue().Due(maxScan, func(j Job) bool {
			if j.Due.After(now) {
				next = j.Due
				return false
			}
			if skip != nil && skip(j) {
				return true
			}
			if len(jobs) == limit {
				return false
			}
			jobs = append(jobs, j)
			return true
		})
	})
	return jobs, next, err
}

// Depth is the number of recipients waiting for a delivery attempt (the
// schedule's entries, for metrics scrapes).
func (s *Records) Depth() (int, error) {
	n := 0
	err := s.tx.View(context.Background(), func(tx Tx) error {
		var err error
		n, err = tx.Queue().Depth()
		return err
	})
	return n, err
}

// Message implements Store.
func (s *Records) Message(ctx context.Context, id string) (*Message, error) {
	var m Message
	err := s.tx.View(ctx, func(tx Tx) error {
		rows := tx.Queue()
		var ok bool
		var err error
		if m, ok, err = rows.Message(id); err != nil {
			return err
		} else if !ok {
			return ErrNotFound
		}
		m.Recipients, err = rows.Recipients(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// Load implements Store.
func (s *Records) Load(ctx context.Context, job Job) (*Message, Recipient, error) {
	var m Message
	var r Recipient
	err := txn.ViewOne(ctx, s.tx, func(tx Tx) error {
		var body []byte
		var rec, ok bool
		var err error
		m, r, body, rec, ok, err = tx.Queue().Attempt(job.MessageID, job.Index, true)
		switch {
		case err != nil:
			return err
		case !rec:
			return fmt.Errorf("%w: %q", ErrNotFound, job.MessageID)
		case !ok:
			return fmt.Errorf("%w: recipient %d of %q", ErrNotFound, job.Index, job.MessageID)
		}
		if m.Inline {
			// A missing body is the renderer's to report; the job stays loadable.
			m.Body = body
		}
		return nil
	})
	return &m, r, err
}

// NeedsBody implements Store.
func (s *Records) NeedsBody(id string) bool {
	needed := false
	s.tx.View(context.Background(), func(tx Tx) error {
		m, ok, err := tx.Queue().Message(id)
		// A record that cannot be read keeps its body: better an orphan
		// file than a lost message.
		needed = err != nil || ok && !m.Inline && m.Pending > 0
		return nil
	})
	return needed
}

var eventOf = map[State]events.Type{
	Delivered:  events.MessageDelivered,
	Bounced:    events.MessageBounced,
	Deferred:   events.MessageDeferred,
	Suppressed: events.MessageSuppressed,
}

// Record implements Store: the recipient's new state, its schedule entry,
// the message's pending count (and its stored body, when the last
// recipient is final), the outcome's event and what it means for the
// suppression list, in one transaction.
func (s *Records) Record(ctx context.Context, job Job, out Outcome) (finished bool, err error) {
	var tenant string
	var attempt func() (Message, Recipient, bool, error)
	// The record reads the rows it writes (Attempt) first, in read: the
	// records of concurrent attempts may commit together, their reads in
	// one round trip (txn.BatchRead).
	read := func(tx Tx) error {
		finished, tenant = false, "" // the function may run more than once
		rows := tx.Queue()
		if err := rows.Unschedule(job); err != nil {
			return err
		}
		if l, ok := rows.(attemptLater); ok {
			attempt = l.AttemptLater(job.MessageID, job.Index)
			return nil
		}
		m, r, _, _, ok, err := rows.Attempt(job.MessageID, job.Index, false)
		attempt = func() (Message, Recipient, bool, error) { return m, r, ok, err }
		return nil
	}
	err = txn.BatchRead(ctx, s.tx, "record", job.MessageID, read, func(tx Tx) error {
		rows := tx.Queue()
		m, r, ok, err := attempt()
		if err != nil || !ok {
			return err // no record: the entry outlived its message, dropping it is all
		}
		if r.State.Final() {
			return nil // a stale schedule entry
		}
		r.State, r.LastReply, r.UpdatedAt, r.Reason = out.State, out.Reply, out.At, out.Reason
		if out.State != Suppressed {
			r.Attempts++ // a suppressed recipient was not tried
		}
		r.NextAttempt = time.Time{}
		if out.State == Deferred {
			r.NextAttempt = out.NextAttempt
			if err := rows.Schedule(Job{MessageID: job.MessageID, Index: job.Index, Domain: job.Domain, Due: out.NextAttempt}); err != nil {
				return err
			}
		}
		if err := rows.PutRecipient(job.MessageID, &r); err != nil {
			return err
		}
		if out.State.Final() {
			m.Pending--
			finished = m.Pending <= 0
			if finished && m.Inline {
				if err := rows.DeleteBody(m.ID); err != nil {
					return err
				}
			}
			if err := rows.PutMessage(&m); err != nil {
				return err
			}
		}
		ev := &events.Event{Type: eventOf[out.State], Time: out.At, Data: events.Data{
			Tenant: m.Tenant, MessageID: m.ID, Recipient: r.Address, List: m.List,
			Reply: out.Reply, Attempts: r.Attempts, Reason: out.Reason,
		}}
		switch out.State {
		case Deferred:
			ev.Data.NextAttempt = &r.NextAttempt
		case Bounced:
			ev.Data.Reason, ev.Data.BounceType, ev.Data.Channel = string(out.Bounce.Reason), out.Bounce.Verdict.String(), "smtp"
		}
		if err := events.Append(tx.Events(), ev); err != nil {
			return err
		}
		if s.rates != nil && !s.ratesOff.Load() && (out.State == Delivered || out.State == Bounced) {
			tenant = m.Tenant
			if err := reputation.Count(tx.Reputation(), m.Tenant, m.SendingDomain(), out.At,
				out.State == Delivered, out.State == Bounced && out.Bounce.Verdict == report.Hard); err != nil {
				return err
			}
		}
		return s.followUp(tx, &m, &r, out)
	})
	if err == nil && tenant != "" {
		s.rates(tenant)
	}
	return finished, err
}

// attemptLater is Rows whose Attempt (without the body) may be answered
// after the function that asked for it returns: PostgreSQL sends it with
// the transaction's next statements, those of the other records of a
// batch included (txn.BatchRead). The function returned gives the answer
// (the record, the recipient, whether both are there), sending what
// waits first if it has not gone.
type attemptLater interface {
	AttemptLater(id string, index int) func() (Message, Recipient, bool, error)
}

// followUp makes what an outcome means for the address, in its
// transaction: a remote bounce goes to the suppression list (at once when
// hard, by repetition when soft), a delivery resets the soft count.
func (s *Records) followUp(tx Tx, m *Message, r *Recipient, out Outcome) error {
	if s.sup == nil {
		return nil
	}
	switch {
	case out.State == Delivered:
		return s.sup.DeliveredTx(tx, m.Tenant, r.Address, m.ID, out.At)
	case out.State == Bounced && out.Bounce.Remote:
		_, err := s.sup.BounceTx(tx, suppression.Failure{
			Tenant: m.Tenant, Address: r.Address, Hard: out.Bounce.Verdict == report.Hard,
			SoftBounce: suppression.SoftBounce{Time: out.At, MessageID: m.ID, Status: out.Bounce.Status,
				Reason: string(out.Bounce.Reason), Diagnostic: out.Reply, Channel: "smtp"},
		})
		return err
	}
	return nil
}
