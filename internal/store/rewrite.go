package store

import (
	"bytes"
	"context"

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

// Sweep deletes old records of the bucket named bucket, walking it in key
// order over as many transactions as it takes, each deleting at most
// chunk keys and examining at most 10×chunk, so that a large backlog never
// holds the writer (and the SMTP 250s queued behind it) for long. Each
// transaction resumes at the first key the last one did not examine. It
// returns how many keys it deleted.
//
// judge is called with each key and value: del deletes the key (after the
// walk: bbolt forbids changing a bucket its cursor is on); judge may then
// delete what belongs to the key in other buckets at once. stop ends the
// sweep at that key, unexamined (the rest of the bucket is younger).
// judge runs inside DB.Update, so it may run more than once and must have
// no effect outside the transaction.
func (db *DB) Sweep(ctx context.Context, bucket []byte, chunk int, judge func(tx *bolt.Tx, k, v []byte) (del, stop bool, err error)) (int, error) {
	total := 0
	var from []byte
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var dead [][]byte
		var next []byte // where the next transaction starts; nil: done
		err := db.Update(func(tx *bolt.Tx) error {
			dead, next = nil, nil
			b := tx.Bucket(bucket)
			c := b.Cursor()
			k, v := c.Seek(from)
			for scanned := 0; k != nil; k, v = c.Next() {
				if scanned == 10*chunk || len(dead) == chunk {
					next = bytes.Clone(k)
					break
				}
				scanned++
				del, stop, err := judge(tx, k, v)
				if err != nil {
					return err
				}
				if stop {
					break
				}
				if del {
					dead = append(dead, bytes.Clone(k))
				}
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(dead)
		if next == nil {
			return total, nil
		}
		from = next
	}
}
