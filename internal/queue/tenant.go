package queue

import (
	"context"
	"fmt"
)

// deleteBatch bounds the messages one transaction of DeleteTenant
// deletes.
const deleteBatch = 1000

// WithSpool gives the queue the spool whose files DeleteTenant removes
// (nil: they are left to the start-up sweep, which finds no record for
// them).
func (s *Records) WithSpool(sp *Spool) *Records {
	s.spool = sp
	return s
}

// DeleteTenant deletes every message of a tenant that is being deleted,
// with its recipients, schedule entries and body, in transactions of at
// most deleteBatch messages, so that a tenant created later with the same
// id finds none of them and nothing more is sent for the one deleted (an
// attempt already under way ends, and its outcome is dropped).
func (s *Records) DeleteTenant(ctx context.Context, tenant string) error {
	for after := ""; ; {
		var next string
		var files []string
		err := s.tx.Update(ctx, func(tx Tx) error {
			next, files = "", nil
			rows := tx.Queue()
			ms, n, err := rows.TenantMessages(tenant, after, deleteBatch)
			if err != nil {
				return err
			}
			next = n
			for _, m := range ms {
				if err := deleteMessage(rows, &m); err != nil {
					return err
				}
				if !m.Inline && m.Pending > 0 {
					files = append(files, m.ID)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if s.spool != nil {
			for _, id := range files {
				if err := s.spool.Remove(id); err != nil {
					return fmt.Errorf("queue: removing the body of %s: %w", id, err)
				}
			}
		}
		if next == "" {
			return nil
		}
		after = next
	}
}

// deleteMessage deletes m with its recipients, their schedule entries
// and its stored body.
func deleteMessage(rows Rows, m *Message) error {
	rs, err := rows.Recipients(m.ID)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.State.Final() {
			continue
		}
		due := r.NextAttempt
		if due.IsZero() {
			due = m.ReceivedAt
		}
		if err := rows.Unschedule(Job{MessageID: m.ID, Index: r.Index, Due: due}); err != nil {
			return err
		}
	}
	return rows.DeleteMessage(m.ID)
}
