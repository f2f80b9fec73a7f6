package events

import (
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
	return l.DB.Sweep(ctx, store.BucketEvents, purgeChunk, func(tx *bolt.Tx, k, v []byte) (bool, bool, error) {
		var ev struct {
			Time time.Time `json:"timestamp"`
			Data struct {
				Tenant string `json:"tenant"`
			} `json:"data"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			return false, false, err
		}
		if !ev.Time.Before(cutoff) {
			return false, ev.Time.After(cutoff.Add(TimeSlack)), nil
		}
		idx := tenantKey(ev.Data.Tenant, binary.BigEndian.Uint64(k))
		return true, false, tx.Bucket(store.BucketTenantEvents).Delete(idx)
	})
}
