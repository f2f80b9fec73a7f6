package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestSweep: Sweep deletes what judge says, in as many transactions as the
// chunk needs, deletes in other buckets alongside, and stops where judge
// says the rest is younger.
func TestSweep(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "heed.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	main, side := []byte("sweep-main"), []byte("sweep-side")
	err = db.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucketIfNotExists(main)
		s, _ := tx.CreateBucketIfNotExists(side)
		for i := range 100 {
			k := fmt.Appendf(nil, "%03d", i)
			m.Put(k, []byte("v"))
			s.Put(k, []byte("v"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	judged := map[string]int{}
	n, err := db.Sweep(context.Background(), main, 3, func(tx *bolt.Tx, k, _ []byte) (bool, bool, error) {
		if string(k) >= "080" {
			return false, true, nil // the rest is younger
		}
		judged[string(k)]++
		if k[2]%2 == 1 {
			return false, false, nil // kept: odd keys
		}
		return true, false, tx.Bucket(side).Delete(k)
	})
	if err != nil || n != 40 {
		t.Fatalf("Sweep = %d, %v; want the 40 even keys below 080", n, err)
	}
	if len(judged) != 80 {
		t.Errorf("judged %d keys, want the 80 below 080", len(judged))
	}
	db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{main, side} {
			left := tx.Bucket(name).Stats().KeyN
			if left != 60 {
				t.Errorf("%s holds %d keys, want 60 (the odd ones below 080 and all from 080)", name, left)
			}
			for i := 0; i < 80; i += 2 {
				if tx.Bucket(name).Get(fmt.Appendf(nil, "%03d", i)) != nil {
					t.Errorf("%s still holds %03d", name, i)
				}
			}
		}
		return nil
	})
}

// TestSweepBoundsEachTransaction: no transaction of a sweep deletes more
// than chunk keys or examines more than 10×chunk, also when a long run of
// kept keys comes first: the bounds are what keep the writer free.
func TestSweepBoundsEachTransaction(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "heed.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bucket := []byte("sweep-bounds")
	err = db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(bucket)
		for i := range 100 {
			b.Put(fmt.Appendf(nil, "%03d", i), []byte("v"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 3
	examined, deleted := map[int]int{}, map[int]int{} // by transaction
	n, err := db.Sweep(context.Background(), bucket, chunk, func(tx *bolt.Tx, k, _ []byte) (bool, bool, error) {
		examined[tx.ID()]++
		del := string(k) >= "040" // the first 40 are kept: more than 10×chunk
		if del {
			deleted[tx.ID()]++
		}
		return del, false, nil
	})
	if err != nil || n != 60 {
		t.Fatalf("Sweep = %d, %v; want the 60 keys from 040", n, err)
	}
	for id, e := range examined {
		if e > 10*chunk || deleted[id] > chunk {
			t.Errorf("transaction %d examined %d keys and deleted %d; at most %d and %d", id, e, deleted[id], 10*chunk, chunk)
		}
	}
}
