// Package postgres is Heed's PostgreSQL storage backend, being built for
// issue 16: a pool of connections (pgx's pgxpool), the schema as versioned
// SQL migrations embedded in the binary, and transactions that retry
// serialization failures and report a lost database as ErrUnavailable.
//
// Durability is the same promise as on bbolt: a caller answers 250 or 2xx
// only after Update returned nil, which is after COMMIT returned with
// synchronous_commit on, that is after the commit's WAL was flushed
// (PostgreSQL docs, "WAL Configuration" and "Asynchronous Commit"). A
// connection whose session would commit asynchronously is refused.
//
// Only this package and its subpackages import the PostgreSQL driver; the
// domain packages will reach it through the storage backend interface.
//
// Lifecycle: Open, then Migrate (at start, or from heed migrate), then any
// number of concurrent Update and View calls, then Close once they have
// returned.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heedmail/heed/internal/txn"
)

// Config says where the database is and how many connections to keep.
type Config struct {
	// DSN is a libpq connection string, keyword/value or URL
	// ("host=/run/postgresql dbname=heed", "postgres://heed@db/heed").
	DSN string
	// MaxConns caps the pool; 0 is pgxpool's default, the larger of 4 and
	// the number of CPUs.
	MaxConns int32
	// Logger receives warnings about the server's settings; nil is
	// slog.Default().
	Logger *slog.Logger
}

// DB is an open PostgreSQL backend. It is safe for concurrent use.
type DB struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// reads gathers ViewOne's reads (reads.go).
	reads reads
	// migrations is the schema this binary knows; tests swap in others.
	migrations []migration
	// midMigration, if set, runs in each migration's transaction between
	// its SQL and its record; tests hold or break a migration there.
	midMigration func(*pgx.Conn)
}

// ErrUnavailable means the database could not be reached or the
// connection was lost: nothing new was committed, or, if the connection
// broke during COMMIT, the outcome is unknown. Callers answer with a
// temporary failure (SMTP 451 4.3.0, HTTP 503) so that the client tries
// again; RFC 5321 §6.1 prefers the rare duplicate to a lost message. The
// pool reconnects by itself when the server is back.
// It is txn.ErrUnavailable to the listeners, which import no driver.
var ErrUnavailable error = unavailable{}

type unavailable struct{}

func (unavailable) Error() string { return "the PostgreSQL database is unavailable" }

// Is makes errors.Is(err, txn.ErrUnavailable) true.
func (unavailable) Is(target error) bool { return target == txn.ErrUnavailable }

// Open connects to the database and checks that the session commits
// durably. It does not change the schema: call Migrate.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	return open(ctx, cfg, nil)
}

// open is Open with a hook for tests to change the pool's settings.
func open(ctx context.Context, cfg Config, tweak func(*pgxpool.Config)) (*DB, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx redacts the password from its parse errors.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("postgres: max_conns is %d, want 0 (automatic) or more", cfg.MaxConns)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	// Every new connection is checked, not only the first: ALTER ROLE or
	// ALTER DATABASE ... SET synchronous_commit takes effect for new
	// sessions while Heed runs.
	pc.AfterConnect = checkSession
	if tweak != nil {
		tweak(pc)
	}
	migs, err := loadMigrations(embedded, "migrations")
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := &DB{pool: pool, log: log, migrations: migs}
	db.reads.db = db
	if err := db.checkServer(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Close closes the pool's connections, waiting for those in use.
func (db *DB) Close() { db.pool.Close() }

// errAsyncCommit is checkSession's refusal.
var errAsyncCommit = errors.New("postgres: synchronous_commit is off for Heed's sessions: a COMMIT could return before it is on disk, and Heed would answer 250 for mail a crash can lose; set it to on (ALTER ROLE ... SET synchronous_commit = on, or in postgresql.conf)")

// checkSession refuses a connection whose commits would return before
// their WAL is flushed. Every other value (local, remote_write, on,
// remote_apply) flushes the local WAL first.
func checkSession(ctx context.Context, conn *pgx.Conn) error {
	var sc string
	if err := conn.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc); err != nil {
		return err
	}
	if sc == "off" {
		return errAsyncCommit
	}
	return nil
}

// checkServer connects once, so that a wrong DSN or a session that commits
// asynchronously stops Heed at start with the reason, and warns about a
// server that does not flush at all.
func (db *DB) checkServer(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		if errors.Is(err, errAsyncCommit) {
			return errAsyncCommit
		}
		return fmt.Errorf("postgres: %w", classify(ctx, err))
	}
	defer conn.Release()
	var fsync string
	if err := conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil {
		return fmt.Errorf("postgres: %w", classify(ctx, err))
	}
	if fsync != "on" {
		db.log.Warn("postgres: the server runs with fsync off; a crash of its machine can lose mail Heed has accepted")
	}
	return nil
}
