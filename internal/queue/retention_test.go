package queue_test

import (
	"context"
	"github.com/heedmail/heed/internal/backend/boltdb"
	. "github.com/heedmail/heed/internal/queue"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/store"
)

// TestPurgeTakesWhatBelongsToTheMessage: purging a finished message
// deletes its recipient rows and its body with its record, not only the
// record the API shows.
func TestPurgeTakesWhatBelongsToTheMessage(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, ctx := boltdb.Queue(db), context.Background()
	now := time.Now()
	m := &Message{ID: ids.New(now), Tenant: "acme", List: "transactional", From: "a@acme.test", ReceivedAt: now,
		Body:       []byte("Subject: hi\r\n\r\nhello\r\n"),
		Recipients: []Recipient{{Index: 0, Address: "pat@example.net"}, {Index: 1, Address: "sam@example.net"}}}
	if err := s.Add(ctx, m); err != nil {
		t.Fatal(err)
	}
	for i := range m.Recipients {
		job := Job{MessageID: m.ID, Index: i, Due: now, Domain: "example.net"}
		if _, err := s.Record(ctx, job, Outcome{State: Delivered, Reply: "250 ok", At: now}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Purge(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want the one message", n, err)
	}
	db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{store.BucketQueue, store.BucketQueueBodies, store.BucketSchedule} {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				t.Errorf("%s holds %d keys after the purge", b, n)
			}
		}
		return nil
	})
}
