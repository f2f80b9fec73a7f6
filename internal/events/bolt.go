package events

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/store"
	bolt "go.etcd.io/bbolt"
)

// Append writes ev into the outbox inside tx, assigning its Seq and, when
// empty, its ID. Callers pass the transaction of the state change the event
// reports.
func Append(tx *bolt.Tx, ev *Event) error {
	b := tx.Bucket(store.BucketEvents)
	// Keys only ever grow: full pages (bbolt's default half-fills them,
	// which suits random inserts).
	b.FillPercent = appendFill
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	ev.Seq = seq
	if ev.ID == "" {
		ev.ID = "evt_" + ids.New(ev.Time)
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	k := seqKey(seq)
	if err := b.Put(k, v); err != nil {
		return err
	}
	idx := tx.Bucket(store.BucketTenantEvents)
	idx.FillPercent = appendFill
	if err := idx.Put(tenantKey(ev.Data.Tenant, seq), nil); err != nil {
		return err
	}
	if fns := watchersOf(tx.DB()); len(fns) > 0 {
		n := Notice{Tenant: ev.Data.Tenant, Type: ev.Type, Channel: ev.Data.Channel}
		tx.OnCommit(func() {
			for _, fn := range fns {
				fn(n)
			}
		})
	}
	return nil
}

// watchers holds the functions each database's events are announced to.
var watchers struct {
	sync.RWMutex
	m map[*bolt.DB][]func(Notice)
}

func watchersOf(db *bolt.DB) []func(Notice) {
	watchers.RLock()
	defer watchers.RUnlock()
	return watchers.m[db]
}

// Watch implements Source: fn is called with a notice of every event once
// the transaction that wrote it has committed (a rolled-back one calls
// nothing). fn runs on the committer and must not block.
func (l BoltLog) Watch(fn func(Notice)) {
	watchers.Lock()
	defer watchers.Unlock()
	if watchers.m == nil {
		watchers.m = make(map[*bolt.DB][]func(Notice))
	}
	db := l.DB.Bolt()
	watchers.m[db] = append(slices.Clip(watchers.m[db]), fn)
}

// appendFill is the fill of pages of buckets written in key order.
const appendFill = 0.95

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

func tenantKey(tenant string, seq uint64) []byte {
	k := append([]byte(tenant), 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

// BoltLog reads events from the bbolt outbox.
type BoltLog struct{ DB *store.DB }

// Events implements Reader.
func (l BoltLog) Events(ctx context.Context, tenant string, after uint64, limit int) ([]Event, error) {
	var out []Event
	err := l.DB.View(func(tx *bolt.Tx) error {
		idx := tx.Bucket(store.BucketTenantEvents).Cursor()
		evs := tx.Bucket(store.BucketEvents)
		prefix := append([]byte(tenant), 0)
		for k, _ := idx.Seek(tenantKey(tenant, after+1)); k != nil && len(out) < limit; k, _ = idx.Next() {
			if len(k) != len(prefix)+8 || string(k[:len(prefix)]) != string(prefix) {
				break
			}
			v := evs.Get(k[len(prefix):])
			if v == nil {
				continue // purged
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event %x: %w", k[len(prefix):], err)
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// Record writes one event that reports no state change of its own (a
// transient delivery report, say) in a transaction of its own.
func (l BoltLog) Record(_ context.Context, ev *Event) error {
	return l.DB.Update(func(tx *bolt.Tx) error {
		e := *ev // Append assigns Seq and ID; the function may run again
		return Append(tx, &e)
	})
}

// ErrNotFound is returned by Event for a sequence number the tenant has no
// event at (never written, purged, or another tenant's).
var ErrNotFound = errors.New("events: no such event")

// Event implements Source: the event of tenant at seq.
func (l BoltLog) Event(_ context.Context, tenant string, seq uint64) (Event, error) {
	var ev Event
	err := l.DB.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(store.BucketEvents).Get(seqKey(seq))
		if v == nil {
			return ErrNotFound
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			return fmt.Errorf("event %d: %w", seq, err)
		}
		if ev.Data.Tenant != tenant {
			return ErrNotFound
		}
		return nil
	})
	return ev, err
}

// Last implements Source: the sequence number of the newest event of any
// tenant (0 when there is none).
func (l BoltLog) Last(_ context.Context) (uint64, error) {
	var seq uint64
	err := l.DB.View(func(tx *bolt.Tx) error {
		seq = tx.Bucket(store.BucketEvents).Sequence()
		return nil
	})
	return seq, err
}

// Since implements Reader: a binary search over the log by time, which
// follows the sequence numbers to within TimeSlack.
func (l BoltLog) Since(_ context.Context, t time.Time) (uint64, error) {
	target := t.Add(-TimeSlack)
	var seq uint64
	err := l.DB.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketEvents)
		c := b.Cursor()
		// before reports whether the first event at or after s happened
		// before target (false past the end).
		before := func(s uint64) (bool, error) {
			k, v := c.Seek(seqKey(s))
			if k == nil {
				return false, nil
			}
			var ev struct {
				Time time.Time `json:"timestamp"`
			}
			if err := json.Unmarshal(v, &ev); err != nil {
				return false, fmt.Errorf("event %x: %w", k, err)
			}
			return ev.Time.Before(target), nil
		}
		lo, hi := uint64(1), b.Sequence()+1
		for lo < hi {
			mid := lo + (hi-lo)/2
			early, err := before(mid)
			if err != nil {
				return err
			}
			if early {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		seq = lo - 1
		return nil
	})
	return seq, err
}

// DeleteTenant implements Reader, in transactions of at most 10,000 events.
func (l BoltLog) DeleteTenant(_ context.Context, tenant string) error {
	prefix := append([]byte(tenant), 0)
	for more := true; more; {
		err := l.DB.Update(func(tx *bolt.Tx) error {
			idx, evs := tx.Bucket(store.BucketTenantEvents), tx.Bucket(store.BucketEvents)
			var keys [][]byte
			c := idx.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(keys) < 10000; k, _ = c.Next() {
				if len(k) == len(prefix)+8 {
					keys = append(keys, bytes.Clone(k))
				}
			}
			more = len(keys) == 10000
			for _, k := range keys {
				if err := evs.Delete(k[len(prefix):]); err != nil {
					return err
				}
				if err := idx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// CountAfter implements Source, reading index keys only.
func (l BoltLog) CountAfter(_ context.Context, tenant string, after uint64, max int) (int, error) {
	n := 0
	prefix := append([]byte(tenant), 0)
	err := l.DB.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketTenantEvents).Cursor()
		for k, _ := c.Seek(tenantKey(tenant, after+1)); k != nil && bytes.HasPrefix(k, prefix) && n < max; k, _ = c.Next() {
			if len(k) == len(prefix)+8 {
				n++
			}
		}
		return nil
	})
	return n, err
}
