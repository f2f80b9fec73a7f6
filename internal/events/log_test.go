package events_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	. "github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
)

// The tests of this file are the event log's conformance suite: written
// once against Log and TxLog, and run on every storage backend
// (docs/storage.md).

func TestMain(m *testing.M) { pgtest.Main(m) }

// rig is a log over a fresh database of one backend.
type rig struct {
	log *Log
	tx  txn.Runner[TxLog]
	// waiting reports whether n writers of events wait for a transaction
	// that wrote one and has not committed: on bbolt, with one writer,
	// always; on PostgreSQL never, they commit (and readers hold back).
	waiting func(n int) (bool, error)
}

var backends = []struct {
	name string
	open func(t *testing.T) rig
}{
	{"bbolt", openBolt},
	{"postgres", openPostgres},
}

func eachBackend(t *testing.T, fn func(t *testing.T, r rig)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

func newRig(b backend.Backend) rig {
	tx := txn.Narrow(b.EventRunner(), func(t backend.Tx) TxLog { return t.Events() })
	return rig{log: NewLog(tx, b.Watch), tx: tx}
}

func openBolt(t *testing.T) rig {
	path := filepath.Join(t.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	r := newRig(boltdb.New(db))
	// bbolt has one writer: no Update runs while another is in its
	// function, so writers are always waiting for the slow one.
	r.waiting = func(int) (bool, error) { return true, nil }
	return r
}

func openPostgres(t *testing.T) rig {
	db := backendtest.OpenPostgres(t, 16)
	r := newRig(db.Backend())
	r.waiting = func(int) (bool, error) { return false, nil }
	return r
}

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

func record(t *testing.T, r rig, evs ...Event) {
	t.Helper()
	for _, ev := range evs {
		if err := r.log.Record(context.Background(), &ev); err != nil {
			t.Fatal(err)
		}
	}
}

func ev(tenant, rcpt string, at time.Time) Event {
	return Event{Type: MessageDelivered, Time: at, Data: Data{Tenant: tenant, Recipient: rcpt, Reply: "250 2.0.0 ok for <" + rcpt + ">"}}
}

// TestAppendAndRead: events are read back per tenant, in order, with a
// cursor and a limit, and one tenant never sees another's.
func TestAppendAndRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		var watched []Notice
		var mu sync.Mutex
		r.log.Watch(func(n Notice) { mu.Lock(); watched = append(watched, n); mu.Unlock() })
		for i := range 5 {
			record(t, r, ev("acme", fmt.Sprintf("a%d@example.com", i), t0), ev("globex", fmt.Sprintf("g%d@example.com", i), t0))
		}
		all, err := r.log.Events(ctx, "acme", 0, 100)
		if err != nil || len(all) != 5 {
			t.Fatalf("Events = %d events, %v; want 5", len(all), err)
		}
		for i, e := range all {
			if e.Data.Tenant != "acme" || e.Data.Recipient != fmt.Sprintf("a%d@example.com", i) || e.ID == "" || !e.Time.Equal(t0) {
				t.Errorf("event %d = %+v", i, e)
			}
			if i > 0 && e.Seq <= all[i-1].Seq {
				t.Errorf("seq %d after %d", e.Seq, all[i-1].Seq)
			}
		}
		page, err := r.log.Events(ctx, "acme", all[1].Seq, 2)
		if err != nil || len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
			t.Errorf("page after the second = %+v, %v", page, err)
		}
		if n, err := r.log.CountAfter(ctx, "acme", all[1].Seq, 2); err != nil || n != 2 {
			t.Errorf("CountAfter with max 2 = %d, %v", n, err)
		}
		if n, err := r.log.CountAfter(ctx, "acme", 0, 100); err != nil || n != 5 {
			t.Errorf("CountAfter = %d, %v", n, err)
		}
		if got, err := r.log.Event(ctx, "acme", all[0].Seq); err != nil || got.ID != all[0].ID {
			t.Errorf("Event = %+v, %v", got, err)
		}
		if _, err := r.log.Event(ctx, "globex", all[0].Seq); !errors.Is(err, ErrNotFound) {
			t.Errorf("another tenant's Event: %v, want ErrNotFound", err)
		}
		last, err := r.log.Last(ctx)
		if err != nil || last < all[4].Seq {
			t.Errorf("Last = %d, %v; want at least %d", last, err, all[4].Seq)
		}
		record(t, r, ev("acme", "later@example.com", t0))
		if evs, _ := r.log.Events(ctx, "acme", last, 10); len(evs) != 1 || evs[0].Seq <= last {
			t.Errorf("after Last: %+v", evs)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(watched) != 11 || watched[0].Tenant != "acme" || watched[0].Type != MessageDelivered {
			t.Errorf("watchers heard %d notices (%+v), want 11", len(watched), watched)
		}
	})
}

// TestSince: reading from Since(t) finds every event that happened at t
// or later.
func TestSince(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		for i := range 10 {
			record(t, r, ev("acme", "pat@example.net", t0.Add(time.Duration(i)*time.Hour)))
		}
		seq, err := r.log.Since(ctx, t0.Add(5*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := r.log.Events(ctx, "acme", seq, 100)
		if len(evs) < 5 || len(evs) > 6 || !evs[len(evs)-5].Time.Equal(t0.Add(5*time.Hour)) {
			t.Errorf("from Since: %d events", len(evs))
		}
		if seq, err := r.log.Since(ctx, t0.Add(100*time.Hour)); err != nil || seq < evs[len(evs)-1].Seq {
			t.Errorf("Since after the last event = %d, %v", seq, err)
		}
	})
}

// TestDeleteTenant: a deleted tenant's events are gone, and no one
// else's.
func TestDeleteTenant(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		record(t, r, ev("acme", "a@example.com", t0), ev("acme2", "b@example.com", t0), ev("acme", "c@example.com", t0))
		if err := r.log.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if evs, _ := r.log.Events(ctx, "acme", 0, 10); len(evs) != 0 {
			t.Errorf("acme still has %d events", len(evs))
		}
		if evs, _ := r.log.Events(ctx, "acme2", 0, 10); len(evs) != 1 {
			t.Errorf("acme2 has %d events, want 1", len(evs))
		}
	})
}

// TestEraseAndAbout: a privacy export finds every event naming the
// address, in any case, in any tenant, and not a longer address; erasure
// removes it from them and keeps the events.
func TestEraseAndAbout(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		record(t, r, ev("acme", "pat@example.net", t0), ev("globex", "PAT@Example.NET", t0),
			ev("acme", "xpat@example.net", t0), ev("acme", "other@example.com", t0))
		about, err := r.log.About(ctx, "pat@example.net")
		if err != nil || len(about) != 2 {
			t.Fatalf("About = %d events, %v; want 2", len(about), err)
		}
		n, err := r.log.Erase(ctx, "pat@example.net")
		if err != nil || n != 2 {
			t.Fatalf("Erase = %d, %v; want 2", n, err)
		}
		if about, _ := r.log.About(ctx, "pat@example.net"); len(about) != 0 {
			t.Errorf("after Erase, About finds %+v", about)
		}
		evs, _ := r.log.Events(ctx, "globex", 0, 10)
		if len(evs) != 1 || evs[0].Data.Recipient != Erased || evs[0].Data.Reply != "250 2.0.0 ok for <[erased]>" {
			t.Errorf("globex's event after Erase: %+v", evs)
		}
		if evs, _ := r.log.Events(ctx, "acme", 0, 10); len(evs) != 3 || evs[1].Data.Recipient != "xpat@example.net" {
			t.Errorf("acme's events after Erase: %+v", evs)
		}
	})
}

// TestPurge: events older than the cutoff go, from every listing; younger
// ones stay.
func TestPurge(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		old := t0.Add(-48 * time.Hour)
		record(t, r, ev("acme", "a@example.com", old), ev("acme", "b@example.com", old), ev("other", "c@example.com", old),
			ev("acme", "d@example.com", t0))
		n, err := r.log.Purge(ctx, t0.Add(-24*time.Hour))
		if err != nil || n != 3 {
			t.Fatalf("Purge = %d, %v; want 3", n, err)
		}
		if evs, _ := r.log.Events(ctx, "acme", 0, 10); len(evs) != 1 || evs[0].Data.Recipient != "d@example.com" {
			t.Errorf("acme's events after Purge: %+v", evs)
		}
		if c, _ := r.log.CountAfter(ctx, "other", 0, 10); c != 0 {
			t.Errorf("other still counts %d events", c)
		}
	})
}

// TestCursorNeverPassesALateCommit is issue 16's outbox trap: a
// transaction writes an event and is slow to commit while others write
// theirs; a reader polling meanwhile must never move its cursor past the
// slow event, which would then commit below it and never be read.
func TestCursorNeverPassesALateCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		record(t, r, ev("acme", "first@example.com", t0))
		appended, release := make(chan struct{}), make(chan struct{})
		slowDone := make(chan error, 1)
		go func() {
			once := sync.Once{}
			slowDone <- r.tx.Update(ctx, func(tx TxLog) error {
				e := ev("acme", "slow@example.com", t0)
				if err := Append(tx, &e); err != nil {
					return err
				}
				// A read sends a deferred insert (PostgreSQL): the
				// number is taken before the transaction dawdles.
				if _, _, err := tx.Get(0); err != nil {
					return err
				}
				once.Do(func() { close(appended) })
				<-release
				return nil
			})
		}()
		<-appended
		const writers = 4
		var wg sync.WaitGroup
		var committed atomic.Int32
		errs := make(chan error, writers)
		for i := range writers {
			wg.Go(func() {
				e := ev("acme", fmt.Sprintf("w%d@example.com", i), t0)
				err := r.log.Record(ctx, &e)
				committed.Add(1)
				errs <- err
			})
		}
		// Poll as an endpoint's dispatcher does, until the writers are
		// all waiting for the slow transaction (bbolt) or have committed
		// above it (PostgreSQL), and once more after that.
		var cursor uint64
		seen := map[string]bool{}
		read := func() {
			evs, err := r.log.Events(ctx, "acme", cursor, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				seen[e.Data.Recipient] = true
				cursor = e.Seq
			}
		}
		for deadline := time.Now().Add(20 * time.Second); ; {
			read()
			ok, err := r.waiting(writers)
			if err != nil {
				t.Fatal(err)
			}
			if ok || committed.Load() == writers {
				read()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the writers neither waited nor committed; seen %v", seen)
			}
		}
		close(release)
		if err := <-slowDone; err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		read()
		if !seen["slow@example.com"] || len(seen) != 2+writers {
			t.Errorf("the reader saw %v: it passed the slow transaction's event", seen)
		}
	})
}
