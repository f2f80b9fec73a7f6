package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The schema is a sequence of SQL files, migrations/NNNN_name.sql,
// numbered from 0001 without gaps. A released file never changes: a
// later change is a new file. Each runs in one transaction together with
// its row in schema_migrations, so a migration is applied entirely or
// not at all; statements that cannot run in a transaction (CREATE INDEX
// CONCURRENTLY) do not belong in one.
//
//go:embed migrations/*.sql
var embedded embed.FS

// migrationLock is the key of the session-level advisory lock
// (pg_advisory_lock) that lets one process at a time migrate, when several
// nodes start together: the bytes of "heed.mig".
const migrationLock int64 = 0x686565642e6d6967

// ErrSchemaTooNew is Migrate's refusal of a database that a newer Heed
// has migrated: this binary does not know its tables and could damage
// them.
var ErrSchemaTooNew = errors.New("the database's schema is newer than this Heed")

type migration struct {
	version  int
	name     string // file name without the number and ".sql"
	sql      string
	checksum string // hex SHA-256 of the file
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// loadMigrations reads dir of fsys, which must hold only migration files
// numbered 1 to n.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	var migs []migration
	for _, e := range entries { // sorted by name
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("postgres: migrations: %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(migs)+1 {
			return nil, fmt.Errorf("postgres: migrations: %s where %04d was expected", e.Name(), len(migs)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("postgres: migrations: %w", err)
		}
		sum := sha256.Sum256(b)
		migs = append(migs, migration{version: v, name: m[2], sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	if len(migs) == 0 {
		return nil, errors.New("postgres: migrations: none")
	}
	return migs, nil
}

// Migrate applies the migrations the database lacks, in order, and
// refuses (ErrSchemaTooNew) a database migrated by a newer binary, unless
// the migrations it does not know only add (expandPrefix), or one whose
// applied migrations differ from this binary's. Concurrent callers,
// in this process or others, wait for each other on an advisory lock; the
// last ones find nothing to do.
func (db *DB) Migrate(ctx context.Context) (err error) {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", classify(ctx, err))
	}
	// The lock belongs to the session: it is released by unlocking, or by
	// closing the connection when the session's state is in doubt.
	unlocked := false
	defer func() {
		if unlocked {
			pc.Release()
		} else {
			_ = pc.Hijack().Close(context.WithoutCancel(ctx))
		}
	}()
	conn := pc.Conn()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("postgres: migrate: waiting for the migration lock: %w", classify(ctx, err))
	}
	err = db.migrateLocked(ctx, conn)
	if _, uerr := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrationLock); uerr == nil {
		unlocked = true
	}
	return err
}

func (db *DB) migrateLocked(ctx context.Context, conn *pgx.Conn) error {
	applied, err := appliedMigrations(ctx, conn)
	if err != nil {
		return err
	}
	known := db.migrations
	if n := len(applied); n > len(known) {
		last := applied[n-1]
		if !onlyExpand(applied[len(known):]) {
			return fmt.Errorf("postgres: %w: it is at version %d (%s), this binary knows up to %d; run the Heed that migrated it, or a later one",
				ErrSchemaTooNew, last.version, last.name, len(known))
		}
		// A rolling upgrade: a node of the next release migrated, and
		// this one, of the previous release, (re)starts meanwhile.
		db.log.Warn("postgres: the database's schema is newer than this Heed by migrations that only add; serving on it (a rolling upgrade: finish it)",
			"version", last.version, "name", last.name, "known", len(known))
	}
	for i, a := range applied[:min(len(applied), len(known))] {
		k := known[i]
		if a.version != k.version || a.checksum != k.checksum {
			return fmt.Errorf("postgres: migrate: the database's migration %04d_%s differs from this binary's %04d_%s; a released migration must never change",
				a.version, a.name, k.version, k.name)
		}
	}
	for _, m := range known[min(len(applied), len(known)):] {
		if err := db.applyMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("postgres: migration %04d_%s: %w", m.version, m.name, classify(ctx, err))
		}
		db.log.Info("postgres: schema migrated", "version", m.version, "name", m.name)
	}
	return nil
}

// appliedMigrations lists schema_migrations by version, empty in a
// database no Heed has touched.
func appliedMigrations(ctx context.Context, conn *pgx.Conn) ([]migration, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", classify(ctx, err))
	}
	if !exists {
		return nil, nil
	}
	rows, err := conn.Query(ctx, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: reading schema_migrations (is this database Heed's own?): %w", classify(ctx, err))
	}
	applied, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (migration, error) {
		var m migration
		err := r.Scan(&m.version, &m.name, &m.checksum)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: reading schema_migrations (is this database Heed's own?): %w", classify(ctx, err))
	}
	for i, m := range applied {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migrate: schema_migrations has version %d where %d was expected", m.version, i+1)
		}
	}
	return applied, nil
}

// applyMigration runs m and records it in one transaction.
// A crash between the two would otherwise leave tables that the next
// start tries to create again.
func (db *DB) applyMigration(ctx context.Context, conn *pgx.Conn, m migration) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Without arguments, pgx sends the file with the simple query
		// protocol, which allows several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return err
		}
		if db.midMigration != nil {
			db.midMigration(tx.Conn())
		}
		_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			m.version, m.name, m.checksum)
		return err
	})
}

// expandPrefix starts the name of a migration that only adds to the
// schema (tables, nullable or defaulted columns, indexes, rows) and
// changes nothing the migrations before it made: the binaries that know
// only those keep working on a database that has it. A binary refuses a
// database newer than itself unless every migration it does not know is
// one of these; that is what lets a cluster roll from one release to the
// next node by node (expand), and leaves a migration that drops or
// changes anything (contract) to a later release, once no node of the
// previous release runs. docs/postgresql.md, "Upgrades without downtime".
const expandPrefix = "expand_"

// onlyExpand reports whether every migration of migs only adds.
func onlyExpand(migs []migration) bool {
	for _, m := range migs {
		if !strings.HasPrefix(m.name, expandPrefix) {
			return false
		}
	}
	return true
}
