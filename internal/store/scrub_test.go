package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestScrubLeavesNoDeletedBytes: a value deleted (and one overwritten) is
// still in the file's free pages until Scrub, and nowhere after it.
func TestScrubLeavesNoDeletedBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heed.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	secret := []byte("pat.secret.marker@example.net")
	put := func(k string, v []byte) {
		t.Helper()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(BucketEvents).Put([]byte(k), v) }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 { // enough to span pages, as a real log does
		put(string(rune('a'+i%26))+string(rune('0'+i/26)), bytes.Repeat([]byte("filler "), 40))
	}
	put("gone", append(bytes.Repeat([]byte("x"), 100), secret...))
	put("kept", append([]byte("before "), secret...))
	// The secret in values all over the file, then every other one
	// deleted: single free pages scattered between live ones.
	for i := range 300 {
		put(fmt.Sprintf("s%04d", i), append(bytes.Repeat([]byte("y"), 1500), secret...))
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(BucketEvents)
		if err := b.Delete([]byte("gone")); err != nil {
			return err
		}
		for i := range 300 {
			k := []byte(fmt.Sprintf("s%04d", i))
			if i%2 == 0 {
				if err := b.Delete(k); err != nil {
					return err
				}
			} else if err := b.Put(k, bytes.Repeat([]byte("z"), 1500)); err != nil {
				return err
			}
		}
		return b.Put([]byte("kept"), []byte("after, erased"))
	}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, secret) {
		t.Skip("bbolt already reused the pages; nothing to show") // the test proves nothing then
	}
	if held, err := db.Scrub(); err != nil || held != 0 {
		t.Fatal(held, err)
	}
	raw, _ = os.ReadFile(path)
	if n := bytes.Count(raw, secret); n > 0 {
		t.Fatalf("%d copies of the deleted bytes are still in the file after Scrub", n)
	}
	// The data that stays is intact.
	if err := db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(BucketEvents).Get([]byte("kept")); string(v) != "after, erased" {
			t.Errorf("kept = %q", v)
		}
		if tx.Bucket(scrubBucket) != nil {
			t.Error("the scratch bucket is left behind")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := Check(db.Bolt()); err != nil {
		t.Fatal(err)
	}
}
