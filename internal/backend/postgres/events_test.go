package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
)

// TestEventReaderWaitsForEarlierWriters: a transaction takes an event
// number and is slow to commit; another commits a higher number. A
// reader that asks then neither passes the slow event (the outbox trap)
// nor leaves out the one committed before it asked: it waits for the slow
// writer, and returns both, in order.
func TestEventReaderWaitsForEarlierWriters(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	log := Events(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ev := func(rcpt string) events.Event {
		return events.Event{Type: events.MessageDelivered, Time: at, Data: events.Data{Tenant: "acme", Recipient: rcpt}}
	}

	appended, release := make(chan struct{}), make(chan struct{})
	var released sync.Once
	letGo := func() { released.Do(func() { close(release) }) }
	t.Cleanup(letGo) // before the pool closes, should the test fail
	slowDone := make(chan error, 1)
	go func() {
		var once sync.Once
		slowDone <- b.EventRunner().Update(ctx, func(tx backend.Tx) error {
			e := ev("slow@example.com")
			if err := events.Append(tx.Events(), &e); err != nil {
				return err
			}
			// A read sends the deferred insert: the number is taken.
			if _, _, err := tx.Events().Get(0); err != nil {
				return err
			}
			once.Do(func() { close(appended) })
			<-release
			return nil
		})
	}()
	<-appended
	fast := ev("fast@example.com")
	if err := log.Record(ctx, &fast); err != nil {
		t.Fatal(err)
	}

	type result struct {
		evs []events.Event
		err error
	}
	read := make(chan result, 1)
	go func() {
		evs, err := log.Events(ctx, "acme", 0, 10)
		read <- result{evs, err}
	}()
	// The reader waits on the slow writer's lock; then the writer ends.
	eventually(t, 20*time.Second, "the reader to wait for the slow writer", func() bool {
		var n int
		err := db.pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND NOT granted").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	letGo()
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	r := <-read
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.evs) != 2 || r.evs[0].Data.Recipient != "slow@example.com" || r.evs[1].Data.Recipient != "fast@example.com" {
		t.Fatalf("the reader got %+v; want the slow event, then the fast one", r.evs)
	}
}

// TestEventReadAfterOwnEvent: a locking transaction (the queue's, which
// a txn.Join lends to the event log's reads) writes an event and then
// reads the log. Its own horizon lock must not hold its own read back:
// it used to wait on itself for ever (each round granted its own lock at
// once and found the same horizon), stalling the transaction.
func TestEventReadAfterOwnEvent(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	earlier := events.Event{Type: events.MessageDelivered, Time: at, Data: events.Data{Tenant: "acme", Recipient: "a@example.com"}}
	if err := Events(b).Record(context.Background(), &earlier); err != nil {
		t.Fatal(err)
	}
	// A deadline only to turn the stall into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []events.Event
	err := locking{b}.Update(ctx, func(tx backend.Tx) error {
		e := events.Event{Type: events.MessageDelivered, Time: at, Data: events.Data{Tenant: "acme", Recipient: "b@example.com"}}
		if err := events.Append(tx.Events(), &e); err != nil {
			return err
		}
		var err error
		got, err = tx.Events().Tenant("acme", 0, 10)
		return err
	})
	if err != nil {
		t.Fatalf("read after its own event: %v", err)
	}
	if len(got) == 0 || got[0].Data.Recipient != "a@example.com" {
		t.Fatalf("read %v, want the committed event first", got)
	}
}

// TestEventReaderIgnoresWaitingWriters: a reader waits for a slow writer
// holding the horizon key; meanwhile another writer asks for that key too
// and queues behind the reader's request. Once the slow writer ends, the
// reader holds the key (exclusive, to its end) and the queued writer
// still waits for it: the reader must not count the queued request as a
// writer at work, or it waits on itself for ever (each round granted its
// own lock at once and found the same horizon) while the queued writer
// waits for the reader. A writer whose lock is not granted has taken no
// number yet.
func TestEventReaderIgnoresWaitingWriters(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	log := Events(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	waitingLocks := func(n int) func() bool {
		return func() bool {
			var got int
			if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND NOT granted").Scan(&got); err != nil {
				t.Fatal(err)
			}
			return got == n
		}
	}

	appended, release := make(chan struct{}), make(chan struct{})
	var released sync.Once
	letGo := func() { released.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	var key int64
	slowDone := make(chan error, 1)
	go func() {
		var once sync.Once
		slowDone <- b.EventRunner().Update(ctx, func(tx backend.Tx) error {
			e := events.Event{Type: events.MessageDelivered, Time: at, Data: events.Data{Tenant: "acme", Recipient: "slow@example.com"}}
			if err := events.Append(tx.Events(), &e); err != nil {
				return err
			}
			if _, _, err := tx.Events().Get(0); err != nil { // sends the insert
				return err
			}
			once.Do(func() { close(appended) })
			<-release
			return nil
		})
	}()
	<-appended
	// The slow writer's horizon key (two int4 halves).
	if err := db.pool.QueryRow(ctx, `SELECT (classid::bigint << 31) | objid::bigint FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 2 AND mode = 'ShareLock' AND granted`).Scan(&key); err != nil {
		t.Fatal(err)
	}

	read := make(chan error, 1)
	go func() {
		_, err := log.Events(ctx, "acme", 0, 10)
		read <- err
	}()
	eventually(t, 20*time.Second, "the reader to wait for the slow writer", waitingLocks(1))

	// A second writer asks for the same key (shared), behind the reader.
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	queued := make(chan error, 1)
	go func() {
		tx, err := conn.Begin(ctx)
		if err == nil {
			if _, err = tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1::int4, $2::int4)", int32(key>>31), int32(key&(1<<31-1))); err == nil {
				err = tx.Commit(ctx)
			}
		}
		queued <- err
	}()
	eventually(t, 20*time.Second, "the second writer to queue behind the reader", waitingLocks(2))

	letGo()
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the reader never returned: it waited on its own lock, and the queued writer on it")
	}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
}
