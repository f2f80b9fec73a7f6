package boltdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
)

// eventRows is events.TxLog in bbolt.
//
// Layout: store.BucketEvents seq (big-endian uint64) → the event's JSON;
// store.BucketTenantEvents tenant 0x00 seq → nothing, the index a
// tenant's listing reads. The bucket's own sequence numbers the events:
// bbolt has one writer, so sequence order is commit order.
type eventRows struct{ tx *bolt.Tx }

// appendFill is the fill of pages of buckets written in key order: keys
// only ever grow, so full pages (bbolt's default half-fills them, which
// suits random inserts).
const appendFill = 0.95

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

func tenantKey(tenant string, seq uint64) []byte {
	k := append([]byte(tenant), 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func (r eventRows) Insert(ev *events.Event) error {
	b := r.tx.Bucket(store.BucketEvents)
	b.FillPercent = appendFill
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	ev.Seq = seq
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return err
	}
	idx := r.tx.Bucket(store.BucketTenantEvents)
	idx.FillPercent = appendFill
	if err := idx.Put(tenantKey(ev.Data.Tenant, seq), nil); err != nil {
		return err
	}
	if fns := watchersOf(r.tx.DB()); len(fns) > 0 {
		n := events.Notice{Tenant: ev.Data.Tenant, Type: ev.Type, Channel: ev.Data.Channel}
		r.tx.OnCommit(func() {
			for _, fn := range fns {
				fn(n)
			}
		})
	}
	return nil
}

func decodeEvent(k, v []byte) (events.Event, error) {
	var ev events.Event
	if err := json.Unmarshal(v, &ev); err != nil {
		return ev, fmt.Errorf("event %x: %w", k, err)
	}
	return ev, nil
}

func (r eventRows) Get(seq uint64) (events.Event, bool, error) {
	k := seqKey(seq)
	v := r.tx.Bucket(store.BucketEvents).Get(k)
	if v == nil {
		return events.Event{}, false, nil
	}
	ev, err := decodeEvent(k, v)
	return ev, err == nil, err
}

// tenantSeqs calls fn with the sequence numbers of tenant's events after
// after, in order, until fn returns false.
func (r eventRows) tenantSeqs(tenant string, after uint64, fn func(seq uint64) (bool, error)) error {
	prefix := append([]byte(tenant), 0)
	c := r.tx.Bucket(store.BucketTenantEvents).Cursor()
	for k, _ := c.Seek(tenantKey(tenant, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+8 {
			continue // a longer tenant id that starts with this one
		}
		more, err := fn(binary.BigEndian.Uint64(k[len(prefix):]))
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func (r eventRows) Tenant(tenant string, after uint64, limit int) ([]events.Event, error) {
	var out []events.Event
	if limit <= 0 {
		return nil, nil
	}
	evs := r.tx.Bucket(store.BucketEvents)
	err := r.tenantSeqs(tenant, after, func(seq uint64) (bool, error) {
		k := seqKey(seq)
		v := evs.Get(k)
		if v == nil {
			return true, nil // purged
		}
		ev, err := decodeEvent(k, v)
		if err != nil {
			return false, err
		}
		out = append(out, ev)
		return len(out) < limit, nil
	})
	return out, err
}

func (r eventRows) CountTenant(tenant string, after uint64, max int) (int, error) {
	n := 0
	if max <= 0 {
		return 0, nil
	}
	err := r.tenantSeqs(tenant, after, func(uint64) (bool, error) {
		n++
		return n < max, nil
	})
	return n, err
}

func (r eventRows) Last() (uint64, error) {
	return r.tx.Bucket(store.BucketEvents).Sequence(), nil
}

// SeqBefore is a binary search over the log by time, which follows the
// sequence numbers to within events.TimeSlack (the caller allowed for it).
func (r eventRows) SeqBefore(target time.Time) (uint64, error) {
	b := r.tx.Bucket(store.BucketEvents)
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
			return 0, err
		}
		if early {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo - 1, nil
}

// Mentioning matches the stored JSON as it is, without decoding the
// events that do not match.
func (r eventRows) Mentioning(addr string, after uint64, limit int) ([]events.Event, error) {
	var out []events.Event
	c := r.tx.Bucket(store.BucketEvents).Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
		if !events.ContainsFold(v, addr) {
			continue
		}
		ev, err := decodeEvent(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

func (r eventRows) Replace(ev events.Event) (bool, error) {
	b := r.tx.Bucket(store.BucketEvents)
	k := seqKey(ev.Seq)
	if b.Get(k) == nil {
		return false, nil
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return false, err
	}
	return true, b.Put(k, v)
}

func (r eventRows) DeleteTenant(tenant string, max int) (int, error) {
	var seqs []uint64
	err := r.tenantSeqs(tenant, 0, func(seq uint64) (bool, error) {
		seqs = append(seqs, seq)
		return len(seqs) < max, nil
	})
	if err != nil {
		return 0, err
	}
	idx, evs := r.tx.Bucket(store.BucketTenantEvents), r.tx.Bucket(store.BucketEvents)
	for _, seq := range seqs {
		if err := evs.Delete(seqKey(seq)); err != nil {
			return 0, err
		}
		if err := idx.Delete(tenantKey(tenant, seq)); err != nil {
			return 0, err
		}
	}
	return len(seqs), nil
}

// Purge examines at most ten times max events, so that a log of young
// events dated out of order does not make one long transaction.
func (r eventRows) Purge(cutoff time.Time, from uint64, max int) (int, uint64, error) {
	b := r.tx.Bucket(store.BucketEvents)
	var dead [][]byte
	var next uint64
	c := b.Cursor()
	scanned := 0
	for k, v := c.Seek(seqKey(from + 1)); k != nil; k, v = c.Next() {
		if scanned == 10*max || len(dead) == max {
			next = binary.BigEndian.Uint64(k) - 1
			break
		}
		scanned++
		var ev struct {
			Time time.Time `json:"timestamp"`
			Data struct {
				Tenant string `json:"tenant"`
			} `json:"data"`
		}
		if err := json.Unmarshal(v, &ev); err != nil {
			return 0, 0, fmt.Errorf("event %x: %w", k, err)
		}
		if !ev.Time.Before(cutoff) {
			if ev.Time.After(cutoff.Add(events.TimeSlack)) {
				break
			}
			continue
		}
		dead = append(dead, bytes.Clone(k))
		if err := r.tx.Bucket(store.BucketTenantEvents).Delete(tenantKey(ev.Data.Tenant, binary.BigEndian.Uint64(k))); err != nil {
			return 0, 0, err
		}
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return 0, 0, err
		}
	}
	return len(dead), next, nil
}
