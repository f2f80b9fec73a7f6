package queue

import (
	"context"
	"time"

	"github.com/heedmail/heed/internal/ids"
)

// purgeBatch bounds the messages one transaction of Purge deletes; it
// examines at most ten times as many.
const purgeBatch = 1000

// Purge deletes the records of finished messages (every recipient final)
// accepted before cutoff, with their recipient rows, in transactions of at
// most 1,000 messages, and returns how many it deleted. Message ids sort by
// acceptance time, so it stops at the first younger one.
func (s *Records) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, next := 0, ""
		err := s.tx.Update(ctx, func(tx Tx) error {
			n, next = 0, ""
			rows := tx.Queue()
			ms, err := rows.Messages(after, 10*purgeBatch)
			if err != nil {
				return err
			}
			for i, m := range ms {
				if n == purgeBatch {
					next = ms[i-1].ID // the next transaction goes on after it
					return nil
				}
				if at, ok := ids.Time(m.ID); ok && !at.Before(cutoff) {
					return nil // the rest is younger
				}
				if m.Pending > 0 || !m.ReceivedAt.Before(cutoff) {
					continue
				}
				if err := rows.DeleteMessage(m.ID); err != nil {
					return err
				}
				n++
			}
			if len(ms) == 10*purgeBatch {
				next = ms[len(ms)-1].ID
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if next == "" {
			return total, nil
		}
		after = next
	}
}
