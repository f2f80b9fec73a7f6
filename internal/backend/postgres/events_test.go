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
