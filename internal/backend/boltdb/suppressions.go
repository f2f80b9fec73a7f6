package boltdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
)

// suppressionRows is suppression.Rows in bbolt.
//
// Layout, in store.BucketSuppressions:
//
//	key   tenant 0x00 suppression.AppendKey(hash, scope, reason)
//	      = tenant 0x00 hash[16] scope 0x00 reason-code
//	value suppression.EncodeEntry(entry)
//
// and in store.BucketSoftBounces:
//
//	key   tenant 0x00 hash[16]
//	value JSON of storedHistory
//
// The value repeats the reason, and a key and value that disagree are
// reported as corrupt. Scope is a list id or "*", never holding a 0x00, so
// the separator is unambiguous. Keys of one tenant and one address are
// adjacent, so Entries is a seek per address; keys of one tenant are
// adjacent, so Page is a range scan.
type suppressionRows struct{ tx *bolt.Tx }

// Suppressions implements backend.Tx.
func (t *Tx) Suppressions() suppression.Rows { return suppressionRows{t.tx} }

func (r suppressionRows) entries() *bolt.Bucket   { return r.tx.Bucket(store.BucketSuppressions) }
func (r suppressionRows) histories() *bolt.Bucket { return r.tx.Bucket(store.BucketSoftBounces) }

func tenantPrefix(tenant string) []byte { return append([]byte(tenant), 0) }

func addrPrefix(tenant string, h suppression.Hash) []byte {
	return append(tenantPrefix(tenant), h[:]...)
}

func entryKey(tenant string, k suppression.Key) []byte {
	return suppression.AppendKey(tenantPrefix(tenant), k)
}

// decodeAt decodes the entry stored under k, whose hash starts at
// k[start:].
func decodeAt(tenant string, k, v []byte, start int) (suppression.Row, error) {
	key, ok := suppression.ParseKey(k[start:])
	if !ok {
		return suppression.Row{}, fmt.Errorf("suppression key %x is malformed", k)
	}
	e, err := suppression.DecodeEntry(v)
	if err == nil && e.Reason != key.Reason {
		err = suppression.ErrCorrupt
	}
	if err != nil {
		return suppression.Row{}, fmt.Errorf("suppression entry %x: %w", k, err)
	}
	e.Tenant, e.List = tenant, key.Scope
	return suppression.Row{Hash: key.Hash, Entry: e}, nil
}

func (r suppressionRows) Entries(tenant string, hashes ...suppression.Hash) ([]suppression.Row, error) {
	var out []suppression.Row
	c := r.entries().Cursor()
	for _, h := range hashes {
		prefix := addrPrefix(tenant, h)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			row, err := decodeAt(tenant, k, v, len(tenant)+1)
			if err != nil {
				return nil, err
			}
			out = append(out, row)
		}
	}
	return out, nil
}

func (r suppressionRows) Get(tenant string, k suppression.Key) (suppression.Entry, bool, error) {
	key := entryKey(tenant, k)
	v := r.entries().Get(key)
	if v == nil {
		return suppression.Entry{}, false, nil
	}
	row, err := decodeAt(tenant, key, v, len(tenant)+1)
	return row.Entry, err == nil, err
}

func (r suppressionRows) Put(row suppression.Row) error {
	return r.entries().Put(entryKey(row.Entry.Tenant, row.Key()), suppression.EncodeEntry(row.Entry))
}

func (r suppressionRows) Delete(tenant string, k suppression.Key) error {
	return r.entries().Delete(entryKey(tenant, k))
}

// Insert writes in the order given: sorted appends fill pages (bbolt's
// default half-full split would leave the file twice the size it needs).
func (r suppressionRows) Insert(rs []suppression.Row) ([]suppression.Row, error) {
	b := r.entries()
	b.FillPercent = 0.9
	var existing []suppression.Row
	for _, row := range rs {
		k := entryKey(row.Entry.Tenant, row.Key())
		if old := b.Get(k); old != nil {
			o, err := decodeAt(row.Entry.Tenant, k, old, len(row.Entry.Tenant)+1)
			if err != nil {
				return nil, err
			}
			existing = append(existing, o)
			continue
		}
		if err := b.Put(k, suppression.EncodeEntry(row.Entry)); err != nil {
			return nil, err
		}
	}
	return existing, nil
}

// scanBudget is how many entries one Page examines at most when a scope
// filter skips most of them, so a page costs bounded time.
const scanBudget = 10000

func (r suppressionRows) Page(tenant, scope string, after *suppression.Key, limit int) ([]suppression.Row, *suppression.Key, error) {
	prefix := tenantPrefix(tenant)
	start := prefix
	var afterKey []byte
	if after != nil {
		afterKey = entryKey(tenant, *after)
		start = afterKey
	}
	var out []suppression.Row
	var last *suppression.Key
	examined := 0
	c := r.entries().Cursor()
	for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if afterKey != nil && bytes.Equal(k, afterKey) {
			continue
		}
		key, ok := suppression.ParseKey(k[len(prefix):])
		if !ok {
			return nil, nil, fmt.Errorf("suppression key %x is malformed", k)
		}
		match := scope == "" || key.Scope == scope
		if examined == scanBudget || match && len(out) == limit {
			return out, last, nil
		}
		examined++
		last = &key
		if !match {
			continue
		}
		row, err := decodeAt(tenant, k, v, len(prefix))
		if err != nil {
			return nil, nil, err
		}
		out = append(out, row)
	}
	return out, nil, nil
}

// forEachTenantOf calls fn with the keys and values of every tenant's
// rows of h in b: one seek per tenant, jumping from one tenant's keys to
// the next's.
func forEachTenantOf(b *bolt.Bucket, h suppression.Hash, fn func(tenant string, k, v []byte) error) error {
	c := b.Cursor()
	k, _ := c.First()
	for k != nil {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			k, _ = c.Next()
			continue
		}
		tenant := string(k[:i])
		prefix := addrPrefix(tenant, h)
		var v []byte
		for k, v = c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := fn(tenant, k, v); err != nil {
				return err
			}
		}
		k, _ = c.Seek(append([]byte(tenant), 1)) // the next tenant
	}
	return nil
}

func (r suppressionRows) Everywhere(h suppression.Hash) ([]suppression.Row, error) {
	var out []suppression.Row
	err := forEachTenantOf(r.entries(), h, func(tenant string, k, v []byte) error {
		row, err := decodeAt(tenant, k, v, len(tenant)+1)
		out = append(out, row)
		return err
	})
	return out, err
}

func (r suppressionRows) DeleteTenant(tenant string, max int) (int, error) {
	n := 0
	pfx := tenantPrefix(tenant)
	for _, b := range []*bolt.Bucket{r.entries(), r.histories()} {
		c := b.Cursor()
		for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx) && n < max; k, _ = c.Seek(pfx) {
			if err := c.Delete(); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// storedHistory is a soft-bounce history's value.
type storedHistory struct {
	Bounces   []suppression.SoftBounce `json:"b,omitempty"`
	Delivered string                   `json:"d,omitempty"`
	Updated   time.Time                `json:"u"`
}

func decodeHistory(tenant string, k, v []byte) (suppression.History, error) {
	var h storedHistory
	if err := json.Unmarshal(v, &h); err != nil {
		return suppression.History{}, fmt.Errorf("soft bounce history %x: %w", k, err)
	}
	return suppression.History{Tenant: tenant, Bounces: h.Bounces, Delivered: h.Delivered, Updated: h.Updated}, nil
}

func (r suppressionRows) History(tenant string, h suppression.Hash) (suppression.History, bool, error) {
	k := addrPrefix(tenant, h)
	v := r.histories().Get(k)
	if v == nil {
		return suppression.History{}, false, nil
	}
	hist, err := decodeHistory(tenant, k, v)
	return hist, err == nil, err
}

func (r suppressionRows) PutHistory(h suppression.Hash, hist suppression.History) error {
	v, err := json.Marshal(storedHistory{Bounces: hist.Bounces, Delivered: hist.Delivered, Updated: hist.Updated})
	if err != nil {
		return err
	}
	return r.histories().Put(addrPrefix(hist.Tenant, h), v)
}

func (r suppressionRows) DeleteHistory(tenant string, h suppression.Hash) error {
	return r.histories().Delete(addrPrefix(tenant, h))
}

func (r suppressionRows) HistoriesEverywhere(h suppression.Hash) ([]suppression.History, error) {
	var out []suppression.History
	err := forEachTenantOf(r.histories(), h, func(tenant string, k, v []byte) error {
		hist, err := decodeHistory(tenant, k, v)
		out = append(out, hist)
		return err
	})
	return out, err
}

// PurgeHistories examines at most ten times max histories; from and next
// are keys of the bucket.
func (r suppressionRows) PurgeHistories(cutoff time.Time, from string, max int) (int, string, error) {
	b := r.histories()
	var dead [][]byte
	next := ""
	c := b.Cursor()
	scanned := 0
	for k, v := c.Seek([]byte(from)); k != nil; k, v = c.Next() {
		if scanned == 10*max || len(dead) == max {
			next = string(k)
			break
		}
		scanned++
		var h storedHistory
		if err := json.Unmarshal(v, &h); err != nil {
			return 0, "", fmt.Errorf("soft bounce history %x: %w", k, err)
		}
		if h.Updated.Before(cutoff) {
			dead = append(dead, bytes.Clone(k))
		}
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return 0, "", err
		}
	}
	return len(dead), next, nil
}
