package events

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/store"
)

// purgeChunk bounds the events one purge transaction deletes.
const purgeChunk = 10000

// Purge deletes the events that happened before cutoff, oldest first, in
// transactions of at most 10,000, and returns how many it deleted. The log
// is in time order to within TimeSlack, so it stops at the first event
// that is TimeSlack younger than cutoff.
func (l BoltLog) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, more := 0, false
		err := l.DB.Update(func(tx *bolt.Tx) error {
			n, more = 0, false
			evs, idx := tx.Bucket(store.BucketEvents), tx.Bucket(store.BucketTenantEvents)
			var dead [][]byte
			var index [][]byte
			c := evs.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(dead) == purgeChunk {
					more = true
					break
				}
				var ev struct {
					Time time.Time `json:"timestamp"`
					Data struct {
						Tenant string `json:"tenant"`
					} `json:"data"`
				}
				if err := json.Unmarshal(v, &ev); err != nil {
					return err
				}
				if !ev.Time.Before(cutoff) {
					if ev.Time.After(cutoff.Add(TimeSlack)) {
						break
					}
					continue
				}
				dead = append(dead, bytes.Clone(k))
				index = append(index, tenantKey(ev.Data.Tenant, binary.BigEndian.Uint64(k)))
			}
			for i, k := range dead {
				if err := evs.Delete(k); err != nil {
					return err
				}
				if err := idx.Delete(index[i]); err != nil {
					return err
				}
			}
			n = len(dead)
			return nil
		})
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}
