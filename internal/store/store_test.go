package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "heed.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestGroupCommit: concurrent writers all land, and one writer's failure
// fails only that writer.
func TestGroupCommit(t *testing.T) {
	db := open(t)
	path := db.Path()
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Update(func(tx *bolt.Tx) error {
				if i%50 == 7 {
					return fmt.Errorf("writer %d fails", i)
				}
				return tx.Bucket(BucketMeta).Put([]byte(fmt.Sprint("k", i)), []byte("v"))
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%50 == 7) != (err != nil) {
			t.Errorf("writer %d: err = %v", i, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(*bolt.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close = %v, want ErrClosed", err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		for i := range errs {
			got := tx.Bucket(BucketMeta).Get([]byte(fmt.Sprint("k", i)))
			if (i%50 == 7) != (got == nil) {
				t.Errorf("key %d after reopen: %q", i, got)
			}
		}
		return nil
	})
}

func TestOpenLockedAndNewerSchema(t *testing.T) {
	db := open(t)
	if _, err := Open(db.Path(), Options{}); err == nil {
		t.Error("a second Open of a database in use succeeded")
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketMeta).Put(keySchema, []byte{SchemaVersion + 1}) })
	path := db.Path()
	db.Close()
	if _, err := Open(path, Options{}); err == nil {
		t.Error("a database of a newer schema opened")
	}
}

// TestOlderSchemaRefused: a database of an older layout is refused at
// open with what to do, not misread later.
func TestOlderSchemaRefused(t *testing.T) {
	db := open(t)
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketMeta).Put(keySchema, []byte{1}) })
	path := db.Path()
	db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "start afresh") {
		t.Errorf("an older schema: %v", err)
	}
}

// TestSchemaUpgradedInPlace: a version 2 database (before soft_bounces)
// opens, gains the bucket and is marked version 3, so a build that knows
// only version 2 refuses it from then on.
func TestSchemaUpgradedInPlace(t *testing.T) {
	db := open(t)
	db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(BucketSoftBounces); err != nil {
			return err
		}
		return tx.Bucket(BucketMeta).Put(keySchema, []byte{2})
	})
	path := db.Path()
	db.Close()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("a version 2 database: %v", err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(BucketMeta).Get(keySchema); len(v) != 1 || v[0] != SchemaVersion {
			t.Errorf("schema version after the upgrade: %v, want %d", v, SchemaVersion)
		}
		if tx.Bucket(BucketSoftBounces) == nil {
			t.Error("no soft_bounces bucket after the upgrade")
		}
		return nil
	})
}

// TestSchemaUpgradedFrom3: a version 3 database (before the console's
// buckets) opens, gains them and is marked version 4.
func TestSchemaUpgradedFrom3(t *testing.T) {
	db := open(t)
	db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketConsoleUsers, BucketConsoleSessions} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(BucketMeta).Put(keySchema, []byte{3})
	})
	path := db.Path()
	db.Close()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("a version 3 database: %v", err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(BucketMeta).Get(keySchema); len(v) != 1 || v[0] != SchemaVersion {
			t.Errorf("schema version after the upgrade: %v, want %d", v, SchemaVersion)
		}
		if tx.Bucket(BucketConsoleUsers) == nil || tx.Bucket(BucketConsoleSessions) == nil {
			t.Error("no console buckets after the upgrade")
		}
		return nil
	})
}

// TestSchemaUpgradedFrom4: a version 4 database (before the reputation
// buckets) opens, gains them and is marked version 5, so a build that
// knows only version 4 refuses it from then on.
func TestSchemaUpgradedFrom4(t *testing.T) {
	db := open(t)
	db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketReputationRates, BucketReputationState} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(BucketMeta).Put(keySchema, []byte{4})
	})
	path := db.Path()
	db.Close()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("a version 4 database: %v", err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(BucketMeta).Get(keySchema); len(v) != 1 || v[0] != SchemaVersion {
			t.Errorf("schema version after the upgrade: %v, want %d", v, SchemaVersion)
		}
		if tx.Bucket(BucketReputationRates) == nil || tx.Bucket(BucketReputationState) == nil {
			t.Error("no reputation buckets after the upgrade")
		}
		return nil
	})
}
