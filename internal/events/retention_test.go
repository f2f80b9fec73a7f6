package events

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/store"
)

// TestPurgeTakesTheTenantIndex: purging events deletes their entries in
// the per-tenant index too, which the API's listing reads first.
func TestPurgeTakesTheTenantIndex(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := time.Now().Add(-time.Hour)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, tenant := range []string{"acme", "acme", "other"} {
			if err := Append(tx, &Event{Type: MessageDelivered, Time: old, Data: Data{Tenant: tenant}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := (BoltLog{DB: db}).Purge(context.Background(), time.Now()); err != nil || n != 3 {
		t.Fatalf("Purge = %d, %v; want 3", n, err)
	}
	db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{store.BucketEvents, store.BucketTenantEvents} {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				t.Errorf("%s holds %d keys after the purge", b, n)
			}
		}
		return nil
	})
}
