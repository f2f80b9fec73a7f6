package suppression

import (
	"bytes"
	"context"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
)

// forEachTenantOf calls fn with the keys and values of every tenant's
// entries of norm: one seek per tenant, jumping from one tenant's keys to
// the next's.
func (s *BoltStore) forEachTenantOf(c *bolt.Cursor, norm string, fn func(tenant string, k, v []byte) error) error {
	k, _ := c.First()
	for k != nil {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			k, _ = c.Next()
			continue
		}
		tenant := string(k[:i])
		prefix := s.addrKey(tenant, norm, "")
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

// Everywhere returns the entries of addr in every tenant's list (a
// privacy export).
func (s *BoltStore) Everywhere(ctx context.Context, addr string) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	var out []Entry
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketSuppressions).Cursor()
		return s.forEachTenantOf(c, norm, func(tenant string, k, v []byte) error {
			e, err := decodeAt(k, v, len(tenant)+1+hashLen)
			if err != nil {
				return err
			}
			e.Tenant = tenant
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// Erase clears addr from every tenant's entries (their Address, and the
// address where a bounce's diagnostic in Evidence quotes it) and deletes
// its soft-bounce histories, and returns how many entries and histories
// it changed. The entries stay, keyed by the keyed hash of the address, so
// every opt-out, bounce and complaint still holds (Lookup finds them, with
// an empty Address): the address is forgotten, the promise not to mail it
// is kept. A history is only a count towards a suppression; forgetting it
// costs nothing the recipient asked to keep.
func (s *BoltStore) Erase(ctx context.Context, addr string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return 0, err
	}
	n := 0
	err = s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(store.BucketSuppressions)
		type kv struct{ k, v []byte }
		var changes []kv
		err := s.forEachTenantOf(b.Cursor(), norm, func(tenant string, k, v []byte) error {
			e, err := decodeEntry(v)
			if err != nil {
				return err
			}
			if !eraseEntry(&e, norm) {
				return nil
			}
			changes = append(changes, kv{bytes.Clone(k), encodeEntry(e)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range changes {
			if err := b.Put(c.k, c.v); err != nil {
				return err
			}
		}
		h, err := s.eraseSoftBounces(tx, norm)
		n = len(changes) + h
		return err
	})
	return n, err
}

// eraseEntry clears norm from e and reports whether anything changed.
func eraseEntry(e *Entry, norm string) bool {
	changed := e.Address != ""
	e.Address = ""
	if e.Evidence != nil {
		evidence := slices.Clone(*e.Evidence)
		for i, b := range evidence {
			if d := events.EraseText(b.Diagnostic, norm); d != b.Diagnostic {
				evidence[i].Diagnostic, changed = d, true
			}
		}
		e.Evidence = &evidence
	}
	return changed
}
