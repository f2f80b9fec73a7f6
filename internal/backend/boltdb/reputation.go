package boltdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
)

// repRows is reputation.Rows in bbolt.
//
// Layout (schema version 5): store.BucketReputationRates, key tenant,
// 0x00, be64(hour), domain; value four be64 counters (final, hard
// bounces, delivered, complaints). A tenant's window is one seek and a
// scan of its recent keys. store.BucketReputationState, key the tenant,
// value the JSON of reputation.State.
type repRows struct{ tx *bolt.Tx }

// Reputation implements backend.Tx.
func (t *Tx) Reputation() reputation.Rows { return repRows{t.tx} }

// Reputation returns the runner of the rates and the guard kept in db.
func Reputation(db *store.DB) txn.Runner[reputation.Tx] {
	return txn.Narrow(New(db), func(t backend.Tx) reputation.Tx { return t })
}

func (r repRows) rates() *bolt.Bucket { return r.tx.Bucket(store.BucketReputationRates) }
func (r repRows) state() *bolt.Bucket { return r.tx.Bucket(store.BucketReputationState) }

func rateKey(tenant string, hour int64, domain string) []byte {
	k := make([]byte, 0, len(tenant)+9+len(domain))
	k = append(k, tenant...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, uint64(hour))
	return append(k, domain...)
}

func decodeCounts(v []byte) (reputation.Counts, error) {
	if len(v) != 32 {
		return reputation.Counts{}, fmt.Errorf("reputation counters of %d bytes", len(v))
	}
	n := func(i int) int64 { return int64(binary.BigEndian.Uint64(v[i*8:])) }
	return reputation.Counts{Final: n(0), HardBounces: n(1), Delivered: n(2), Complaints: n(3)}, nil
}

func encodeCounts(c reputation.Counts) []byte {
	v := make([]byte, 0, 32)
	for _, n := range []int64{c.Final, c.HardBounces, c.Delivered, c.Complaints} {
		v = binary.BigEndian.AppendUint64(v, uint64(n))
	}
	return v
}

func (r repRows) Add(tenant, domain string, hour int64, c reputation.Counts) error {
	k := rateKey(tenant, hour, domain)
	if v := r.rates().Get(k); v != nil {
		old, err := decodeCounts(v)
		if err != nil {
			return err
		}
		c = c.Add(old)
	}
	return r.rates().Put(k, encodeCounts(c))
}

func (r repRows) Buckets(tenant string, from int64) ([]reputation.Bucket, error) {
	prefix := append([]byte(tenant), 0)
	var out []reputation.Bucket
	c := r.rates().Cursor()
	for k, v := c.Seek(rateKey(tenant, max(from, 0), "")); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		rest := k[len(prefix):]
		if len(rest) < 8 {
			return nil, fmt.Errorf("reputation key %x: too short", k)
		}
		cs, err := decodeCounts(v)
		if err != nil {
			return nil, fmt.Errorf("reputation key %x: %w", k, err)
		}
		out = append(out, reputation.Bucket{Domain: string(rest[8:]), Hour: int64(binary.BigEndian.Uint64(rest)), Counts: cs})
	}
	return out, nil
}

// Prune scans every key: the bucket holds at most a week of hours per
// tenant and domain, and the retention job runs it once an hour.
func (r repRows) Prune(before int64, limit int) (int, error) {
	var old [][]byte
	c := r.rates().Cursor()
	for k, _ := c.First(); k != nil && len(old) < limit; k, _ = c.Next() {
		i := bytes.IndexByte(k, 0)
		if i < 0 || len(k) < i+9 || int64(binary.BigEndian.Uint64(k[i+1:])) < before {
			old = append(old, bytes.Clone(k))
		}
	}
	for _, k := range old {
		if err := r.rates().Delete(k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

func (r repRows) State(tenant string) (reputation.State, bool, error) {
	var s reputation.State
	v := r.state().Get([]byte(tenant))
	if v == nil {
		return s, false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return s, false, fmt.Errorf("reputation state of %q: %w", tenant, err)
	}
	return s, true, nil
}

func (r repRows) PutState(s reputation.State) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.state().Put([]byte(s.Tenant), v)
}

func (r repRows) Paused() ([]reputation.State, error) {
	var out []reputation.State
	err := r.state().ForEach(func(k, v []byte) error {
		var s reputation.State
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("reputation state of %q: %w", k, err)
		}
		if s.Paused {
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

func (r repRows) DeleteTenant(tenant string) error {
	if err := deletePrefix(r.rates(), append([]byte(tenant), 0)); err != nil {
		return err
	}
	return r.state().Delete([]byte(tenant))
}
