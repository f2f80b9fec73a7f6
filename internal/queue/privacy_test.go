package queue_test

import (
	"bytes"
	"context"
	"github.com/heedmail/heed/internal/backend/boltdb"
	. "github.com/heedmail/heed/internal/queue"
	"path/filepath"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/store"
)

// TestEraseRewritesSpoolFiles: a body kept in a spool file (one too large
// to go inline) that another recipient still needs is rewritten without
// the erased address; a file that does not mention it is left alone.
func TestEraseRewritesSpoolFiles(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	spool, err := OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	s, ctx, now := boltdb.Queue(db), context.Background(), time.Now()
	write := func(id, body string) {
		f, err := spool.Create(id)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(body))
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	m := &Message{ID: ids.New(now), Tenant: "acme", List: "transactional", From: "a@acme.test", ReceivedAt: now,
		Recipients: []Recipient{{Index: 0, Address: "pat@example.net"}, {Index: 1, Address: "sam@example.net"}}}
	write(m.ID, "To: Pat <pat@example.net>, sam@example.net\r\n\r\nHi Pat (PAT@example.net)\r\n")
	if err := s.Add(ctx, m); err != nil {
		t.Fatal(err)
	}
	const other = "other-message"
	write(other, "To: sam@example.net\r\n\r\nHi\r\n")

	n, err := s.Erase(ctx, "pat@example.net", spool)
	if err != nil || n != 1 {
		t.Fatalf("Erase = %d, %v; want 1", n, err)
	}
	got, _ := spool.ReadAll(m.ID)
	if bytes.Contains(bytes.ToLower(got), []byte("pat@example.net")) || !bytes.Contains(got, []byte("sam@example.net")) {
		t.Errorf("the body still needed for sam reads %q", got)
	}
	if got, _ := spool.ReadAll(other); string(got) != "To: sam@example.net\r\n\r\nHi\r\n" {
		t.Errorf("a body without the address became %q", got)
	}
}
