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
	return s.db.Sweep(ctx, store.BucketMessages, 1000, func(tx *bolt.Tx, k, v []byte) (bool, bool, error) {
		if at, ok := ids.Time(string(k)); ok && !at.Before(cutoff) {
			return false, true, nil
		}
		var m Message
		if err := json.Unmarshal(v, &m); err != nil {
			return false, false, err
		}
		if m.Pending > 0 || !m.ReceivedAt.Before(cutoff) {
			return false, false, nil
		}
		if err := tx.Bucket(store.BucketBodies).Delete(k); err != nil {
			return false, false, err
		}
		rc := tx.Bucket(store.BucketDeliveries).Cursor()
		for rk, _ := rc.Seek(k); rk != nil && len(rk) == len(k)+4 && bytes.HasPrefix(rk, k); rk, _ = rc.Seek(k) {
			if err := rc.Delete(); err != nil {
				return false, false, err
			}
		}
		return true, false, nil
	})
}
