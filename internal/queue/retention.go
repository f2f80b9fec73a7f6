package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/store"
)

// Purge deletes the records of finished messages (every recipient final)
// accepted before cutoff, with their recipient rows, in transactions of at
// most 1,000 messages, and returns how many it deleted. Message ids sort by
// acceptance time, so it stops at the first younger one.
func (s *BoltStore) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	var from []byte
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, more := 0, false
		var last []byte
		err := s.db.Update(func(tx *bolt.Tx) error {
			n, more, last = 0, false, nil
			msgs, rows, bodies := tx.Bucket(store.BucketMessages), tx.Bucket(store.BucketDeliveries), tx.Bucket(store.BucketBodies)
			var dead [][]byte
			c := msgs.Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for ; k != nil; k, v = c.Next() {
				if at, ok := ids.Time(string(k)); ok && !at.Before(cutoff) {
					break
				}
				if len(dead) == 1000 {
					more = true
					break
				}
				last = bytes.Clone(k)
				var m Message
				if err := json.Unmarshal(v, &m); err != nil {
					return err
				}
				if m.Pending <= 0 && m.ReceivedAt.Before(cutoff) {
					dead = append(dead, bytes.Clone(k))
				}
			}
			for _, k := range dead {
				if err := msgs.Delete(k); err != nil {
					return err
				}
				if err := bodies.Delete(k); err != nil {
					return err
				}
				rc := rows.Cursor()
				for rk, _ := rc.Seek(k); rk != nil && len(rk) == len(k)+4 && bytes.HasPrefix(rk, k); rk, _ = rc.Seek(k) {
					if err := rc.Delete(); err != nil {
						return err
					}
				}
			}
			n = len(dead)
			return nil
		})
		total += n
		if err != nil || !more {
			return total, err
		}
		from = last
	}
}
