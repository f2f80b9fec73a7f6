package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
	bolt "go.etcd.io/bbolt"
)

// BoltStore is the bbolt implementation of Store.
//
// Layout: messages id→Message (without recipients); deliveries
// id+be32(index)→Recipient; schedule be64(due unix ns)+id+be32(index)→
// recipient domain. A job stays in the schedule until its outcome is
// recorded, so an attempt cut short by a crash is made again.
type BoltStore struct {
	db  *store.DB
	sup *suppression.Service

	// seen memoises the schedule entries Due parsed, by key: an entry in
	// flight stays at the head of the schedule until its outcome is
	// recorded, and every scan passes it again (under load, each message's
	// entry is read a few dozen times), so parsing it afresh each time
	// made most of the relay's allocations.
	seenMu sync.Mutex
	seen   map[string]Job
}

// NewBoltStore returns the queue store kept in db.
func NewBoltStore(db *store.DB) *BoltStore { return &BoltStore{db: db} }

// SuppressHardBounces makes Record act on bounces in the transaction that
// records them: a hard bounce adds a bounce suppression (every list of the
// tenant), a soft one joins the address's soft-bounce history (which
// suppresses by sup's SoftRule), and a delivery resets that history. sup
// must be kept in the same database.
func (s *BoltStore) SuppressHardBounces(sup *suppression.Service) *BoltStore {
	s.sup = sup
	return s
}

var _ Store = (*BoltStore)(nil)

// idOrderedFill is how full bbolt packs the pages of the messages and
// deliveries buckets. Their keys start with a message id, and ids sort by
// acceptance time, so new keys land at the right edge: bbolt's default of
// one half suits random inserts and here leaves every page half empty,
// which made each group commit write about two more pages. Not 1: Record
// rewrites a row a little longer (state, reply) shortly after Add wrote it.
const idOrderedFill = 0.9

func rowKey(id string, idx int) []byte {
	return binary.BigEndian.AppendUint32([]byte(id), uint32(idx))
}

func schedKey(due time.Time, id string, idx int) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(due.UnixNano()))
	return append(k, rowKey(id, idx)...)
}

func parseSchedKey(k, v []byte) (Job, bool) {
	if len(k) < 8+4+1 {
		return Job{}, false
	}
	id := string(k[8 : len(k)-4])
	return Job{
		MessageID: id,
		Index:     int(binary.BigEndian.Uint32(k[len(k)-4:])),
		Due:       time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))),
		Domain:    string(v),
	}, true
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// Add implements Store.
func (s *BoltStore) Add(_ context.Context, msg *Message) error {
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
	raw, err := json.Marshal(head)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(store.BucketMessages)
		msgs.FillPercent = idOrderedFill
		if err := msgs.Put([]byte(msg.ID), raw); err != nil {
			return err
		}
		if head.Inline {
			if err := tx.Bucket(store.BucketBodies).Put([]byte(msg.ID), msg.Body); err != nil {
				return err
			}
		}
		rows, sched := tx.Bucket(store.BucketDeliveries), tx.Bucket(store.BucketSchedule)
		rows.FillPercent = idOrderedFill
		for _, r := range msg.Recipients {
			ev := &events.Event{Type: events.MessageAccepted, Time: msg.ReceivedAt, Data: events.Data{
				Tenant: msg.Tenant, MessageID: msg.ID, Recipient: r.Address, List: msg.List,
			}}
			if r.State == Suppressed {
				// Found on the suppression list at accept time: final at
				// once, and the app hears why instead of "accepted".
				ev.Type, ev.Data.Reason, ev.Data.Reply = events.MessageSuppressed, r.Reason, r.LastReply
			} else {
				r.State = Queued
				if err := sched.Put(schedKey(msg.ReceivedAt, msg.ID, r.Index), []byte(domainOf(r.Address))); err != nil {
					return err
				}
			}
			r.UpdatedAt = msg.ReceivedAt
			if err := putJSON(rows, rowKey(msg.ID, r.Index), r); err != nil {
				return err
			}
			if err := events.Append(boltdb.TxFromBolt(tx).Events(), ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// Due implements Store.
func (s *BoltStore) Due(_ context.Context, now time.Time, limit int, skip func(Job) bool) (jobs []Job, next time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketSchedule).Cursor()
		// Entries in flight or for a domain at its cap are skipped; the scan
		// stops after a bounded number of them so that a large backlog for
		// one busy domain costs little per wake-up (the workers' completions
		// wake the scheduler again).
		scanned, maxScan := 0, 4*limit+1024
		s.seenMu.Lock()
		defer s.seenMu.Unlock()
		if s.seen == nil || len(s.seen) > 4*maxScan {
			// Entries whose outcome was recorded are never looked up
			// again; starting afresh once the map holds four scans'
			// worth drops them (Erase also empties it).
			s.seen = make(map[string]Job, maxScan)
		}
		for k, v := c.First(); k != nil && scanned < maxScan; k, v = c.Next() {
			scanned++
			j, ok := s.seen[string(k)]
			if !ok {
				if j, ok = parseSchedKey(k, v); !ok {
					continue
				}
				s.seen[string(k)] = j
			}
			if j.Due.After(now) {
				next = j.Due
				return nil
			}
			if skip != nil && skip(j) {
				continue
			}
			if len(jobs) == limit {
				return nil
			}
			jobs = append(jobs, j)
		}
		return nil
	})
	return jobs, next, err
}

// Depth is the number of recipients waiting for a delivery attempt (the
// schedule's entries; it reads the whole schedule, for metrics scrapes).
func (s *BoltStore) Depth() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(store.BucketSchedule).Stats().KeyN
		return nil
	})
	return n, err
}

// Message implements Store.
func (s *BoltStore) Message(_ context.Context, id string) (*Message, error) {
	var m Message
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(store.BucketMessages).Get([]byte(id))
		if raw == nil {
			return ErrNotFound
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		c := tx.Bucket(store.BucketDeliveries).Cursor()
		pfx := []byte(id)
		for k, v := c.Seek(pfx); k != nil && len(k) == len(pfx)+4 && bytes.HasPrefix(k, pfx); k, v = c.Next() {
			var r Recipient
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			m.Recipients = append(m.Recipients, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// Load implements Store.
func (s *BoltStore) Load(_ context.Context, job Job) (*Message, Recipient, error) {
	var m Message
	var r Recipient
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := getJSON(tx.Bucket(store.BucketMessages), []byte(job.MessageID), &m); err != nil {
			return err
		}
		if m.Inline {
			// A missing body is the renderer's to report; the job stays loadable.
			if v := tx.Bucket(store.BucketBodies).Get([]byte(job.MessageID)); v != nil {
				m.Body = bytes.Clone(v) // v is only valid inside the transaction
			}
		}
		return getJSON(tx.Bucket(store.BucketDeliveries), rowKey(job.MessageID, job.Index), &r)
	})
	return &m, r, err
}

// NeedsBody implements Store.
func (s *BoltStore) NeedsBody(id string) bool {
	needed := false
	s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(store.BucketMessages).Get([]byte(id))
		if raw == nil {
			return nil
		}
		var m Message
		// A record that cannot be read keeps its body: better an orphan
		// file than a lost message.
		needed = json.Unmarshal(raw, &m) != nil || !m.Inline && m.Pending > 0
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

// Record implements Store.
func (s *BoltStore) Record(_ context.Context, job Job, out Outcome) (finished bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		finished = false // the function may run more than once
		msgs, rows := tx.Bucket(store.BucketMessages), tx.Bucket(store.BucketDeliveries)
		msgs.FillPercent, rows.FillPercent = idOrderedFill, idOrderedFill
		sched := tx.Bucket(store.BucketSchedule)
		if err := sched.Delete(schedKey(job.Due, job.MessageID, job.Index)); err != nil {
			return err
		}
		var m Message
		var r Recipient
		rk := rowKey(job.MessageID, job.Index)
		rawMsg, rawRow := msgs.Get([]byte(job.MessageID)), rows.Get(rk)
		if rawMsg == nil || rawRow == nil {
			return nil // the entry outlived its message: dropping it is all
		}
		if err := json.Unmarshal(rawMsg, &m); err != nil {
			return err
		}
		if err := json.Unmarshal(rawRow, &r); err != nil {
			return err
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
			if err := sched.Put(schedKey(out.NextAttempt, job.MessageID, job.Index), []byte(job.Domain)); err != nil {
				return err
			}
		}
		if err := putJSON(rows, rk, r); err != nil {
			return err
		}
		if out.State.Final() {
			m.Pending--
			finished = m.Pending <= 0
			if finished && m.Inline {
				if err := tx.Bucket(store.BucketBodies).Delete([]byte(m.ID)); err != nil {
					return err
				}
			}
			if err := putJSON(msgs, []byte(m.ID), m); err != nil {
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
		if err := events.Append(boltdb.TxFromBolt(tx).Events(), ev); err != nil {
			return err
		}
		return s.followUp(tx, &m, &r, out)
	})
	return finished, err
}

// followUp makes what an outcome means for the address, in its
// transaction: a remote bounce goes to the suppression list (at once when
// hard, by repetition when soft), a delivery resets the soft count.
func (s *BoltStore) followUp(tx *bolt.Tx, m *Message, r *Recipient, out Outcome) error {
	if s.sup == nil {
		return nil
	}
	switch {
	case out.State == Delivered:
		return s.sup.DeliveredTx(boltdb.TxFromBolt(tx), m.Tenant, r.Address, m.ID, out.At)
	case out.State == Bounced && out.Bounce.Remote:
		_, err := s.sup.BounceTx(boltdb.TxFromBolt(tx), suppression.Failure{
			Tenant: m.Tenant, Address: r.Address, Hard: out.Bounce.Verdict == report.Hard,
			SoftBounce: suppression.SoftBounce{Time: out.At, MessageID: m.ID, Status: out.Bounce.Status,
				Reason: string(out.Bounce.Reason), Diagnostic: out.Reply, Channel: "smtp"},
		})
		return err
	}
	return nil
}

func getJSON(b *bolt.Bucket, k []byte, v any) error {
	raw := b.Get(k)
	if raw == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, k)
	}
	return json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}
