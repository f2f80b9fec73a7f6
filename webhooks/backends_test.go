package webhooks_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
	. "github.com/heedmail/heed/webhooks"
)

// The tests that run through eachBackend are the webhook store's
// conformance suite: written once against Store (Service) and run on
// every storage backend (docs/storage.md). dispatch_test.go drives the
// dispatcher on bbolt.

func TestMain(m *testing.M) { pgtest.Main(m) }

// bed is a store and its event log over a fresh database of one backend.
type bed struct {
	b     backend.Backend
	store *Service
	log   *events.Log
	// waiting reports whether n writers of events wait for a transaction
	// that wrote one and has not committed.
	waiting func(n int) (bool, error)
}

func newBed(b backend.Backend) *bed {
	return &bed{
		b:     b,
		store: New(txn.Narrow(b, func(t backend.Tx) Tx { return t })),
		log:   events.NewLog(txn.Narrow(b.EventRunner(), func(t backend.Tx) events.TxLog { return t.Events() }), b.Watch),
	}
}

var backends = []struct {
	name string
	open func(t *testing.T) *bed
}{
	{"bbolt", openBoltBed},
	{"postgres", openPostgresBed},
}

func eachBackend(t *testing.T, fn func(t *testing.T, b *bed)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { fn(t, be.open(t)) })
	}
}

func openBoltBed(t *testing.T) *bed {
	path := filepath.Join(t.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
		// Reopening runs bbolt's consistency check on what the test left.
		db, err := store.Open(path, store.Options{})
		if err != nil {
			t.Errorf("reopen (consistency check): %v", err)
			return
		}
		db.Close()
	})
	b := newBed(boltdb.New(db))
	// bbolt has one writer: no Update runs while another is in its
	// function, so writers are always waiting for the slow one.
	b.waiting = func(int) (bool, error) { return true, nil }
	return b
}

func openPostgresBed(t *testing.T) *bed {
	db := backendtest.OpenPostgres(t, 16)
	b := newBed(db.Backend())
	// PostgreSQL's writers commit above the open one; its readers hold back.
	b.waiting = func(int) (bool, error) { return false, nil }
	return b
}

// t0 is whole microseconds, a time both backends keep exactly.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

func (b *bed) emit(t *testing.T, tenant, rcpt string) events.Event {
	t.Helper()
	ev := events.Event{Type: events.MessageBounced, Time: t0, Data: events.Data{Tenant: tenant, MessageID: "m1", Recipient: rcpt}}
	if err := b.log.Record(context.Background(), &ev); err != nil {
		t.Fatal(err)
	}
	// Read back for its Seq (Record sets none: its transaction may run twice).
	evs, err := b.log.Events(context.Background(), tenant, 0, 1<<20)
	if err != nil || len(evs) == 0 {
		t.Fatalf("the event is not in the log: %v", err)
	}
	return evs[len(evs)-1]
}

func (b *bed) endpoint(t *testing.T, tenant, id string) *Endpoint {
	t.Helper()
	ep := &Endpoint{Tenant: tenant, ID: id, URL: "https://hooks.example/" + id, State: Active, CreatedAt: t0, UpdatedAt: t0}
	if err := b.store.CreateEndpoint(context.Background(), ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

// result is an attempt at ev for endpoint id of ev's tenant.
func result(id string, ev events.Event, st Status, next time.Time, response string) Result {
	return Result{
		Tenant: ev.Data.Tenant, Endpoint: id, Event: ev,
		Attempt: Attempt{At: t0, StatusCode: 500, Response: response},
		Status:  st, NextAttempt: next, CountRetry: st == Retrying || st == Failed,
	}
}
