package queue_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	. "github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
)

// The tests that take a rig are the queue's conformance suite: written
// once against Records, and run on every storage backend
// (docs/storage.md). The other tests of this package run the queue end
// to end on bbolt.

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	testHashKey = []byte("0123456789abcdef0123456789abcdef")
	// t0 is whole microseconds: PostgreSQL keeps no finer times.
	t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
)

// rig is the queue over one backend, with the stores it writes into and
// the backend itself (for tests that wrap its transactions or look at
// rows).
type rig struct {
	q     *Records
	log   *events.Log
	sup   *suppression.Service
	b     backend.Backend
	spool *Spool
}

func newRig(b backend.Backend, spool *Spool) rig {
	now := func() time.Time { return t0 }
	sup := suppression.New(txn.Narrow(b, func(t backend.Tx) suppression.Tx { return t }), testHashKey, now).WithSoftBounces(testSoftRule)
	r := rig{b: b, spool: spool, sup: sup,
		log: events.NewLog(txn.Narrow(b.EventRunner(), func(t backend.Tx) events.TxLog { return t.Events() }), b.Watch)}
	r.q = r.records(func(t backend.Tx) Tx { return t })
	return r
}

// records returns the queue over the rig's backend with its transactions
// converted by conv (a failing face, say).
func (r rig) records(conv func(backend.Tx) Tx) *Records {
	return NewRecords(txn.Narrow(r.b, conv)).SuppressHardBounces(r.sup)
}

// eachBackend runs fn once on each backend, as a subtest named after it.
func eachBackend(t *testing.T, fn func(t *testing.T, r rig)) {
	for _, b := range []struct {
		name string
		open func(t *testing.T) rig
	}{{"bbolt", openBolt}, {"postgres", openPostgres}} {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

// openBolt opens the queue over a fresh bbolt database under
// t.TempDir(), with a spool directory beside it; when the test ends the
// database is checked and closed.
func openBolt(t *testing.T) rig {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Check(db.Bolt()); err != nil {
			t.Errorf("database inconsistent: %v", err)
		}
		db.Close()
	})
	spool, err := OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	return newRig(boltdb.New(db), spool)
}

// openPostgres opens the queue over a fresh database of the test
// binary's throwaway PostgreSQL (pgtest), migrated; bodies are in the
// database.
func openPostgres(t *testing.T) rig {
	t.Helper()
	db := backendtest.OpenPostgres(t, 0)
	return newRig(db.Backend(), DatabaseSpool())
}

// failingTx is a transaction whose event log fails to write events of
// type fail: a failure half-way through a write, after its rows.
type failingTx struct {
	backend.Tx
	fail events.Type
	// after is how many events of type fail are written before one fails.
	after int
	seen  *int
}

func (f failingTx) Events() events.TxLog { return failingLog{f.Tx.Events(), f} }

type failingLog struct {
	events.TxLog
	f failingTx
}

var errDiskFull = errors.New("disk full")

func (l failingLog) Insert(ev *events.Event) error {
	if ev.Type == l.f.fail {
		*l.f.seen++
		if *l.f.seen > l.f.after {
			return errDiskFull
		}
	}
	return l.TxLog.Insert(ev)
}

// failing returns the queue whose transactions fail at the after+1-th
// event of type typ (counted afresh in each transaction).
func (r rig) failing(typ events.Type, after int) *Records {
	return r.records(func(t backend.Tx) Tx {
		seen := 0
		return failingTx{Tx: t, fail: typ, after: after, seen: &seen}
	})
}
