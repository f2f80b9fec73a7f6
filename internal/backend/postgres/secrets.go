package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrNoSecret is Secrets' refusal to make a secret for a database that
// already holds data written under one: a new key would silently break
// what the lost one protected.
var ErrNoSecret = errors.New("postgres: a server secret is missing")

// Secrets returns the secrets whose names start with prefix, from the
// server_secrets table (migration 0007). When there is none, gen makes
// the first ones and they are stored, but only in a database that holds
// no tenant yet: a database written under a secret that is gone is
// refused with ErrNoSecret. Nodes starting together agree: the check and
// the insert hold the migration lock's key as a transaction lock, and
// the transaction is SERIALIZABLE, so the secret is generated once and
// never replaced.
func (db *DB) Secrets(ctx context.Context, prefix string, gen func() (map[string][]byte, error)) (map[string][]byte, error) {
	var out map[string][]byte
	err := db.Update(ctx, func(tx pgx.Tx) error {
		out = map[string][]byte{}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return err
		}
		found, err := secretsLike(ctx, tx, prefix)
		if err != nil || len(found) > 0 {
			out = found
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenants)").Scan(&used); err != nil {
			return err
		}
		if used {
			return fmt.Errorf("%w: %q is not in server_secrets, but this database holds tenants whose data was keyed with it; restore the row from a backup of the database", ErrNoSecret, prefix)
		}
		made, err := gen()
		if err != nil {
			return err
		}
		for name, v := range made {
			if !strings.HasPrefix(name, prefix) {
				return fmt.Errorf("postgres: secret %q outside %q", name, prefix)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO server_secrets (name, value) VALUES ($1, $2)", name, v); err != nil {
				return err
			}
			out[name] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: server secrets: %w", err)
	}
	return out, nil
}

// PutSecret stores a secret that another store holds (heed storage copy
// brings the bbolt data directory's keys): it is written if absent, and
// refused if the database has a different one under that name.
func (db *DB) PutSecret(ctx context.Context, name string, value []byte) error {
	return db.Update(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, value); err != nil {
			return err
		}
		var same bool
		if err := tx.QueryRow(ctx, "SELECT value = $2 FROM server_secrets WHERE name = $1", name, value).Scan(&same); err != nil {
			return err
		}
		if !same {
			return fmt.Errorf("postgres: server secret %q: the database holds a different one", name)
		}
		return nil
	})
}

func secretsLike(ctx context.Context, tx pgx.Tx, prefix string) (map[string][]byte, error) {
	rows, err := tx.Query(ctx, "SELECT name, value FROM server_secrets WHERE starts_with(name, $1)", prefix)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	var name string
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&name, &v}, func() error {
		out[name] = v
		return nil
	})
	return out, err
}

// Ping checks that the database answers, for readiness probes: a
// database that cannot be reached is ErrUnavailable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", classify(ctx, err))
	}
	return nil
}

// SchemaVersion returns the last migration the database has applied (0
// for a database no Heed has touched) and the last this binary knows.
func (db *DB) SchemaVersion(ctx context.Context) (found, known int, err error) {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: %w", classify(ctx, err))
	}
	defer pc.Release()
	applied, err := appliedMigrations(ctx, pc.Conn())
	if err != nil {
		return 0, 0, err
	}
	return len(applied), len(db.migrations), nil
}

// erasedTables are the tables a privacy erasure rewrites.
var erasedTables = []string{
	"suppressions", "soft_bounces", "events", "messages", "deliveries", "bodies",
	"schedule", "webhook_deliveries", "audit",
}

// Vacuum runs VACUUM on the tables a privacy erasure rewrites, so that
// the row versions it left dead (which still hold the address) are
// removed from the tables and their indexes now rather than whenever
// autovacuum comes by. VACUUM cannot run in a transaction: it runs on
// the pool, after the erasure's transactions committed. Row versions an
// older snapshot still needs are kept; docs/postgresql.md says what else
// still holds the address (WAL, backups).
func (db *DB) Vacuum(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "VACUUM "+strings.Join(erasedTables, ", ")); err != nil {
		return fmt.Errorf("postgres: vacuum after an erasure: %w", classify(ctx, err))
	}
	return nil
}
