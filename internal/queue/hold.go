package queue

import (
	"context"
	"time"
)

// HoldFor is how long a held recipient's schedule entry is put off. A
// resume releases the tenant's held recipients at once (Release); the
// hour only bounds how long one stays put off should a resume's release
// not run (a crash between the two), after which it is held again if
// the tenant is still paused.
const HoldFor = time.Hour

// Hold puts job's schedule entry off until until without an attempt, an
// event or a change of state: the mail of a paused tenant waits, neither
// sent nor bounced (package reputation). A held recipient is not expired
// while held: max_queue_lifetime is judged at an attempt, and a resumed
// recipient is attempted at least once more.
func (s *Records) Hold(ctx context.Context, job Job, until time.Time) error {
	return s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Queue()
		r, ok, err := rows.Recipient(job.MessageID, job.Index)
		if err != nil || !ok || r.State.Final() {
			return err
		}
		if err := rows.Unschedule(job); err != nil {
			return err
		}
		r.NextAttempt = until
		if err := rows.PutRecipient(job.MessageID, &r); err != nil {
			return err
		}
		return rows.Schedule(Job{MessageID: job.MessageID, Index: job.Index, Domain: job.Domain, Due: until})
	})
}

// releaseBatch bounds the messages one transaction of Release examines.
const releaseBatch = 200

// Release makes every pending recipient of tenant due at now, for a
// resumed tenant whose held mail must go at once, and returns how many it
// moved. A recipient deferred by a remote server is retried at once too.
func (s *Records) Release(ctx context.Context, tenant string, now time.Time) (int, error) {
	total := 0
	for after := ""; ; {
		var next string
		var n int
		err := s.tx.Update(ctx, func(tx Tx) error {
			rows := tx.Queue()
			n = 0
			ms, nx, err := rows.TenantMessages(tenant, after, releaseBatch)
			if err != nil {
				return err
			}
			next = nx
			for _, m := range ms {
				if m.Pending <= 0 {
					continue
				}
				rs, err := rows.Recipients(m.ID)
				if err != nil {
					return err
				}
				for _, r := range rs {
					if r.State.Final() || !r.NextAttempt.After(now) {
						continue
					}
					j := Job{MessageID: m.ID, Index: r.Index, Domain: domainOf(r.Address), Due: r.NextAttempt}
					if err := rows.Unschedule(j); err != nil {
						return err
					}
					r.NextAttempt = now
					if err := rows.PutRecipient(m.ID, &r); err != nil {
						return err
					}
					j.Due = now
					if err := rows.Schedule(j); err != nil {
						return err
					}
					n++
				}
			}
			return nil
		})
		total += n
		if err != nil || next == "" {
			return total, err
		}
		after = next
	}
}
