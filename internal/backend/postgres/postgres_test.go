package postgres

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestMain stops the throwaway PostgreSQL when the tests end, including
// when one fails.
func TestMain(m *testing.M) { pgtest.Main(m) }

// openTest opens dsn, closed when t ends.
func openTest(t *testing.T, dsn string, tweak func(*pgxpool.Config)) *DB {
	t.Helper()
	db, err := open(context.Background(), Config{DSN: dsn, Logger: slog.New(slog.DiscardHandler)}, tweak)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// migrated opens a new database with this binary's schema.
func migrated(t *testing.T) (*DB, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	db := openTest(t, dsn, nil)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, dsn
}

// TestOpenRefusesAsyncCommit: with synchronous_commit off, COMMIT returns
// before the WAL is flushed and a 250 could be given for mail a crash
// loses; Open must say so instead of starting.
func TestOpenRefusesAsyncCommit(t *testing.T) {
	dsn := pgtest.DSN(t)
	_, err := Open(context.Background(), Config{DSN: dsn + " options='-c synchronous_commit=off'"})
	if !errors.Is(err, errAsyncCommit) || !strings.Contains(err.Error(), "synchronous_commit") {
		t.Fatalf("Open with synchronous_commit=off: %v, want the refusal", err)
	}
	// local flushes the local WAL before COMMIT returns: accepted.
	db, err := Open(context.Background(), Config{DSN: dsn + " options='-c synchronous_commit=local'"})
	if err != nil {
		t.Fatalf("Open with synchronous_commit=local: %v", err)
	}
	db.Close()
}

// TestAsyncCommitSetLaterIsRefused: a database switched to asynchronous
// commit while Heed runs gets no write through a new connection.
func TestAsyncCommitSetLaterIsRefused(t *testing.T) {
	ctx := context.Background()
	db, _ := migrated(t)
	var name string
	if err := db.View(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT current_database()").Scan(&name)
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "ALTER DATABASE "+name+" SET synchronous_commit = off")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.pool.Reset() // as after a restart of the server
	err := db.Update(ctx, func(tx pgx.Tx) error { return nil })
	if !errors.Is(err, errAsyncCommit) {
		t.Fatalf("Update on an asynchronous session: %v, want the refusal", err)
	}
}

func TestOpenBadDSN(t *testing.T) {
	_, err := Open(context.Background(), Config{DSN: "postgres://heed:s3cret@[::1/heed"})
	if err == nil {
		t.Fatal("Open accepted a DSN that does not parse")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error shows the password: %v", err)
	}
	if _, err := Open(context.Background(), Config{DSN: "host=/nonexistent", MaxConns: -1}); err == nil {
		t.Fatal("Open accepted a negative max_conns")
	}
}

// TestOpenUnreachable: a server that is not there is ErrUnavailable, the
// temporary kind, not a configuration error.
func TestOpenUnreachable(t *testing.T) {
	_, err := Open(context.Background(), Config{DSN: "host=" + t.TempDir() + " user=heed dbname=heed connect_timeout=5"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open of a socket nobody listens on: %v, want ErrUnavailable", err)
	}
}
