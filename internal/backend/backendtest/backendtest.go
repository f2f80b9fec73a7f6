// Package backendtest opens the databases that the conformance suites of
// the stores run on (docs/storage.md): a fresh bbolt file under the test's
// temporary directory, checked for consistency when the test ends, and a
// fresh, migrated database of the test binary's throwaway PostgreSQL
// (pgtest; the package's TestMain must call pgtest.Main). Tests only.
package backendtest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/store"
)

// OpenBolt opens a new bbolt database under t.TempDir(). When the test
// ends it is closed and opened again, which runs bbolt's consistency check
// on what the test left.
func OpenBolt(t testing.TB) *store.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		db, err := store.Open(path, store.Options{})
		if err != nil {
			t.Errorf("reopen (consistency check): %v", err)
			return
		}
		db.Close()
	})
	return db
}

// OpenPostgres opens a new database of the throwaway PostgreSQL, with
// Heed's schema, and a pool of at most maxConns connections (0: the
// backend's default); it is closed when the test ends.
func OpenPostgres(t testing.TB, maxConns int32) *postgres.DB {
	t.Helper()
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{DSN: pgtest.DSN(t), MaxConns: maxConns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}
