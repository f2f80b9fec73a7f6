package queue

import (
	"context"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
)

// RecipientOf is one recipient of a message, for a privacy export.
type RecipientOf struct {
	MessageID string    `json:"message_id"`
	Tenant    string    `json:"tenant"`
	List      string    `json:"list"`
	Recipient Recipient `json:"recipient"`
}

// eraseBatch bounds the rows one transaction of an erasure rewrites, so
// that an erasure never holds up the 250s for long (the schedule, the
// group commit and every Record wait on the writer).
const eraseBatch = 1000

// About returns the recipients, of any message of any tenant, that are
// addr. It reads every delivery row, a page per read transaction.
func (s *Records) About(ctx context.Context, addr string) ([]RecipientOf, error) {
	var out []RecipientOf
	var after *Cursor
	for {
		var page []RecipientOf
		var next *Cursor
		err := s.tx.View(ctx, func(tx Tx) error {
			page = nil
			rows := tx.Queue()
			ds, n, err := rows.Mentioning(addr, after, eraseBatch)
			if err != nil {
				return err
			}
			next = n
			for _, d := range ds {
				if !strings.EqualFold(d.Recipient.Address, addr) {
					continue
				}
				m, _, err := rows.Message(d.MessageID)
				if err != nil {
					return err
				}
				page = append(page, RecipientOf{MessageID: d.MessageID, Tenant: m.Tenant, List: m.List, Recipient: d.Recipient})
			}
			return nil
		})
		if err != nil {
			return out, err
		}
		out = append(out, page...)
		if next == nil {
			return out, nil
		}
		after = next
	}
}

// Erase removes addr from the queue: a recipient that is addr and not
// final yet is finished (suppressed, "erased": nothing more is sent to
// it), every recipient row that is or quotes addr is rewritten without
// it, a body no recipient needs any more is deleted, and a body still
// needed for others has addr replaced wherever it is written out. It
// returns the recipients erased. It works in transactions of at most
// eraseBatch rows; an erasure cut short is completed by running it again.
func (s *Records) Erase(ctx context.Context, addr string, spool *Spool) (int, error) {
	total := 0
	var files []string // spool bodies to delete after the commits
	var after *Cursor
	for {
		n, next, done, err := s.eraseRows(ctx, addr, after)
		if err != nil {
			return total, err
		}
		total += n
		files = append(files, done...)
		if next == nil {
			break
		}
		after = next
	}
	for from := ""; ; {
		next, err := s.eraseBodies(ctx, addr, from)
		if err != nil {
			return total, err
		}
		if next == "" {
			break
		}
		from = next
	}
	if spool == nil {
		return total, nil
	}
	for _, id := range files {
		if err := spool.Remove(id); err != nil {
			return total, err
		}
	}
	// Bodies in spool files still needed for other recipients: rewritten
	// wherever they mention addr (not only those of its own recipients).
	return total, spool.Rewrite(func(b []byte) ([]byte, bool) {
		if !events.ContainsFold(b, addr) {
			return nil, false
		}
		return []byte(events.EraseText(string(b), addr)), true
	})
}

// eraseRows erases addr from one page of delivery rows after after, in
// one transaction, and returns how many recipients were addr, where to go
// on, and the spool bodies no recipient needs any more.
func (s *Records) eraseRows(ctx context.Context, addr string, after *Cursor) (n int, next *Cursor, files []string, err error) {
	err = s.tx.Update(ctx, func(tx Tx) error {
		n, next, files = 0, nil, nil
		rows := tx.Queue()
		ds, nc, err := rows.Mentioning(addr, after, eraseBatch)
		if err != nil {
			return err
		}
		next = nc
		var touched []string // messages a recipient of which was finished
		for _, d := range ds {
			r := d.Recipient
			if strings.EqualFold(r.Address, addr) {
				n++
				if !r.State.Final() {
					if err := s.unschedule(rows, d.MessageID, r); err != nil {
						return err
					}
					r.State, r.Reason, r.NextAttempt = Suppressed, "erased at the recipient's request", time.Time{}
					if len(touched) == 0 || touched[len(touched)-1] != d.MessageID {
						touched = append(touched, d.MessageID)
					}
				}
				r.Address = events.Erased
			}
			r.LastReply = events.EraseText(r.LastReply, addr)
			if err := rows.PutRecipient(d.MessageID, &r); err != nil {
				return err
			}
		}
		for _, id := range touched {
			done, err := recount(rows, id)
			if err != nil {
				return err
			}
			if done {
				files = append(files, id)
			}
		}
		return nil
	})
	return n, next, files, err
}

// unschedule removes the schedule entry of r, a recipient not final yet:
// it is due at its next attempt, or at the message's acceptance before
// the first (Add and Record schedule it so; deleteMessage reads it so).
func (s *Records) unschedule(rows Rows, id string, r Recipient) error {
	due := r.NextAttempt
	if due.IsZero() {
		m, ok, err := rows.Message(id)
		if err != nil || !ok {
			return err
		}
		due = m.ReceivedAt
	}
	return rows.Unschedule(Job{MessageID: id, Index: r.Index, Due: due})
}

// recount sets the pending count of message id from its recipients and
// drops its stored body once none is pending; it reports a finished
// message whose body is in a spool file.
func recount(rows Rows, id string) (spooled bool, err error) {
	m, ok, err := rows.Message(id)
	if err != nil || !ok {
		return false, err
	}
	rs, err := rows.Recipients(id)
	if err != nil {
		return false, err
	}
	m.Pending = 0
	for _, r := range rs {
		if !r.State.Final() {
			m.Pending++
		}
	}
	if m.Pending <= 0 && m.Inline {
		if err := rows.DeleteBody(id); err != nil {
			return false, err
		}
	}
	return m.Pending <= 0 && !m.Inline, rows.PutMessage(&m)
}

// eraseBodies erases addr from one page of bodies kept in the database:
// a finished message's goes, another's has addr replaced.
func (s *Records) eraseBodies(ctx context.Context, addr, from string) (next string, err error) {
	err = s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Queue()
		ids, n, err := rows.BodiesMentioning(addr, from, eraseBatch)
		if err != nil {
			return err
		}
		next = n
		for _, id := range ids {
			m, ok, err := rows.Message(id)
			if err != nil || !ok {
				continue // a body without its record is the sweep's
			}
			if m.Pending <= 0 {
				if err := rows.DeleteBody(id); err != nil {
					return err
				}
				continue
			}
			body, _, err := rows.Body(id)
			if err != nil {
				return err
			}
			if err := rows.PutBody(id, []byte(events.EraseText(string(body), addr))); err != nil {
				return err
			}
		}
		return nil
	})
	return next, err
}
