package events

import (
	"context"
	"time"
)

// Purge deletes the events that happened before cutoff, oldest first, in
// transactions of at most 10,000, and returns how many it deleted. The log
// is in time order to within TimeSlack, so a backend may stop at the first
// event that is TimeSlack younger than cutoff.
func (l *Log) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for from := uint64(0); ; {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, next := 0, uint64(0)
		err := l.tx.Update(ctx, func(tx TxLog) error {
			var err error
			n, next, err = tx.Purge(cutoff, from, deleteChunk)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if next == 0 {
			return total, nil
		}
		from = next
	}
}
