package suppression_test

import (
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	. "github.com/heedmail/heed/suppression"
)

// The tests of this package that take an opener are the suppression
// list's conformance suite: written once against Store and events.Log,
// and run on every storage backend (docs/storage.md).

var (
	testHashKey = []byte("0123456789abcdef0123456789abcdef")
	// testNow is whole microseconds: PostgreSQL keeps no finer times.
	testNow = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
)

// opener opens a store and its event log over a fresh, empty database
// with the fixed clock testNow; the test's clean-up closes it.
type opener func(t *testing.T) (*Service, *events.Log)

var backends = []struct {
	name string
	open opener
}{
	{"bbolt", openBolt},
	{"postgres", openPostgres},
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// eachBackend runs fn once on each backend, as a subtest named after it.
func eachBackend(t *testing.T, fn func(t *testing.T, open opener)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open) })
	}
}

func openBolt(t *testing.T) (*Service, *events.Log) {
	s, db := openBoltDB(t)
	return s, boltdb.Events(db)
}

// openBoltDB opens a store over a fresh bbolt database under t.TempDir().
// When the test ends the database is closed and reopened, which runs
// bbolt's consistency check on what the test left.
func openBoltDB(t *testing.T) (*Service, *store.DB) {
	t.Helper()
	db := backendtest.OpenBolt(t)
	return boltdb.Suppressions(db, testHashKey, func() time.Time { return testNow }), db
}

// openPostgres opens a store over a fresh database of the test binary's
// throwaway PostgreSQL (pgtest), migrated.
func openPostgres(t *testing.T) (*Service, *events.Log) {
	t.Helper()
	db := backendtest.OpenPostgres(t, 0)
	b := db.Backend()
	return postgres.Suppressions(b, testHashKey, func() time.Time { return testNow }), postgres.Events(b)
}

// eachRawBackend runs fn once on each backend, with the backend itself,
// for tests that wrap its transactions.
func eachRawBackend(t *testing.T, fn func(t *testing.T, b backend.Backend)) {
	raw := []struct {
		name string
		open func(t *testing.T) backend.Backend
	}{
		{"bbolt", func(t *testing.T) backend.Backend { _, db := openBoltDB(t); return boltdb.New(db) }},
		{"postgres", func(t *testing.T) backend.Backend {
			db := backendtest.OpenPostgres(t, 0)
			return db.Backend()
		}},
	}
	for _, b := range raw {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}
