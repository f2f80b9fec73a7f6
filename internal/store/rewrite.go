package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// Rewrite calls fn with every key and value of b and stores the value fn
// returns for those it changes (ok true), after the walk (bbolt forbids
// changing a bucket while ForEach runs over it). It returns how many it
// changed; fn's error stops it.
func Rewrite(b *bolt.Bucket, fn func(k, v []byte) (nv []byte, ok bool, err error)) (int, error) {
	type kv struct{ k, v []byte }
	var changes []kv
	err := b.ForEach(func(k, v []byte) error {
		nv, ok, err := fn(k, v)
		if ok && err == nil {
			changes = append(changes, kv{bytes.Clone(k), nv})
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, c := range changes {
		if err := b.Put(c.k, c.v); err != nil {
			return 0, err
		}
	}
	return len(changes), nil
}
