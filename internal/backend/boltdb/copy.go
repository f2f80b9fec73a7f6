package boltdb

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
)

// The faces' methods for heed storage copy, which reads a stopped bbolt
// database and writes every row to another backend with its sequence
// numbers kept. bbolt is the source today; Restore is here so that the
// faces stay one interface on both backends (and a copy back is possible).

func (r eventRows) All(after uint64, limit int) ([]events.Event, error) {
	var out []events.Event
	c := r.tx.Bucket(store.BucketEvents).Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
		ev, err := decodeEvent(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

func (r eventRows) Restore(evs []events.Event, last uint64) error {
	b := r.tx.Bucket(store.BucketEvents)
	b.FillPercent = appendFill
	idx := r.tx.Bucket(store.BucketTenantEvents)
	for _, ev := range evs {
		if ev.Seq <= b.Sequence() {
			return fmt.Errorf("event %d: not above the log's last, %d", ev.Seq, b.Sequence())
		}
		v, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(ev.Seq), v); err != nil {
			return err
		}
		if err := idx.Put(tenantKey(ev.Data.Tenant, ev.Seq), nil); err != nil {
			return err
		}
		if err := b.SetSequence(ev.Seq); err != nil {
			return err
		}
	}
	return raiseSequence(b, last)
}

func raiseSequence(b *bolt.Bucket, last uint64) error {
	if last > b.Sequence() {
		return b.SetSequence(last)
	}
	return nil
}

func (r auditRows) Restore(rs []audit.Record, last uint64) error {
	b := r.tx.Bucket(store.BucketAudit)
	b.FillPercent = appendFill
	for _, rec := range rs {
		if rec.Seq <= b.Sequence() {
			return fmt.Errorf("audit record %d: not above the log's last, %d", rec.Seq, b.Sequence())
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(rec.Seq), v); err != nil {
			return err
		}
		if err := b.SetSequence(rec.Seq); err != nil {
			return err
		}
	}
	return raiseSequence(b, last)
}

// Histories's positions are keys of the bucket (tenant 0x00 hash).
func (r suppressionRows) Histories(after string, limit int) ([]suppression.HistoryRow, string, error) {
	var out []suppression.HistoryRow
	c := r.histories().Cursor()
	k, v := c.Seek([]byte(after))
	for ; k != nil && len(out) < limit; k, v = c.Next() {
		i := bytes.IndexByte(k, 0)
		if i < 0 || len(k) != i+1+suppression.HashLen {
			return nil, "", fmt.Errorf("soft bounce history key %x is malformed", k)
		}
		hist, err := decodeHistory(string(k[:i]), k, v)
		if err != nil {
			return nil, "", err
		}
		var h suppression.Hash
		copy(h[:], k[i+1:])
		out = append(out, suppression.HistoryRow{Hash: h, History: hist})
	}
	if k == nil {
		return out, "", nil
	}
	return out, string(k), nil
}
