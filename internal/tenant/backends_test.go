package tenant_test

import (
	"testing"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/store"
	. "github.com/heedmail/heed/internal/tenant"
)

// The tests of this package that take an opener are the tenant
// registry's conformance suite: written once against Store and Registry,
// and run on every storage backend (docs/storage.md).

// opener opens a registry store over a fresh, empty database; the test's
// clean-up closes it.
type opener func(t *testing.T) *DBStore

var backends = []struct {
	name string
	open func(t *testing.T) (backend.Backend, func() *DBStore)
}{
	{"bbolt", openBolt},
	{"postgres", openPostgres},
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// eachBackend runs fn once on each backend, as a subtest named after it.
func eachBackend(t *testing.T, fn func(t *testing.T, open opener)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			fn(t, func(t *testing.T) *DBStore { _, s := b.open(t); return s() })
		})
	}
}

// eachRawBackend runs fn once on each backend, with the backend itself
// and a function that returns a new store over it (sharing the backend's
// read cache), for tests that reach under the store.
func eachRawBackend(t *testing.T, fn func(t *testing.T, b backend.Backend, store func() *DBStore)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			raw, s := b.open(t)
			fn(t, raw, s)
		})
	}
}

// openBolt opens a fresh bbolt database under t.TempDir(). When the test
// ends the database is closed and reopened, which runs bbolt's
// consistency check on what the test left.
func openBolt(t *testing.T) (backend.Backend, func() *DBStore) {
	t.Helper()
	db := openBoltDB(t)
	return boltdb.New(db), func() *DBStore { return boltdb.Tenants(db) }
}

func openBoltDB(t testing.TB) *store.DB {
	t.Helper()
	return backendtest.OpenBolt(t)
}

// openPostgres opens a fresh database of the test binary's throwaway
// PostgreSQL (pgtest), migrated.
func openPostgres(t *testing.T) (backend.Backend, func() *DBStore) {
	t.Helper()
	db := backendtest.OpenPostgres(t, 0)
	b := db.Backend()
	return b, func() *DBStore { return postgres.Tenants(b) }
}
