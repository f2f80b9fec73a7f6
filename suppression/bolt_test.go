package suppression_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	. "github.com/heedmail/heed/suppression"
)

// The tests of this file are of the bbolt backend alone: its group commit
// and its key layout.

// TestAddUnderRetries: the group committer reruns a batch when one of its
// functions fails; every Add must still write its entry and its events
// exactly once and report created correctly.
func TestAddUnderRetries(t *testing.T) {
	s, db := openBoltDB(t)
	const n = 60
	var wg sync.WaitGroup
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			created[i], errs[i] = s.Add(context.Background(), Entry{Tenant: "acme", Address: fmt.Sprintf("user%d@example.com", i), List: All, Reason: Bounce})
		}()
		go func() {
			defer wg.Done()
			db.Update(func(*bolt.Tx) error { return errors.New("a failing neighbour") })
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !created[i] {
			t.Errorf("Add %d: created %v, err %v", i, created[i], errs[i])
		}
	}
	evs, err := boltdb.Events(db).Events(context.Background(), "acme", 0, 1000)
	if err != nil || len(evs) != n {
		t.Errorf("%d events (%v), want %d", len(evs), err, n)
	}
}

// TestMalformedKeys: a key of the earlier one-entry-per-scope layout, or
// whose reason disagrees with its value, is an error, never an entry:
// Check fails closed on it.
func TestMalformedKeys(t *testing.T) {
	for name, mangle := range map[string]func(k []byte) []byte{
		"earlier layout":   func(k []byte) []byte { return k[:len(k)-2] },
		"reason mismatch":  func(k []byte) []byte { return append(k[:len(k)-1], ReasonCode(Bounce)) },
		"unknown reason":   func(k []byte) []byte { return append(k[:len(k)-1], byte(len(ReasonCodes))) },
		"no reason byte":   func(k []byte) []byte { return k[:len(k)-1] },
		"NUL in the scope": func(k []byte) []byte { return append(append(k[:len(k)-2:len(k)-2], 0, 'x'), k[len(k)-2:]...) },
	} {
		t.Run(name, func(t *testing.T) {
			s, db := openBoltDB(t)
			ctx := context.Background()
			e := Entry{Tenant: "acme", Address: "bob@example.com", List: All, Reason: Unsubscribe, Time: testNow}
			err := db.Update(func(tx *bolt.Tx) error {
				k := mangle(AppendKey([]byte("acme\x00"), Key{Hash: s.HashOf(e.Address), Scope: e.List, Reason: e.Reason}))
				return tx.Bucket(store.BucketSuppressions).Put(k, EncodeEntry(e))
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, e.Address); err == nil {
				t.Errorf("Check = %v with no error", stop)
			}
			if _, _, err := s.List(ctx, "acme", "", "", 10); err == nil {
				t.Error("List: no error")
			}
		})
	}
}
