package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/jackc/pgx/v5"
)

// withMigrations returns this binary's first migration (the record,
// schema_migrations) followed by extra (file name → SQL, numbered from
// 0002), loaded as Migrate would load them: the tests of the machinery do
// not depend on the stores' tables.
func withMigrations(t *testing.T, extra map[string]string) []migration {
	t.Helper()
	fsys := fstest.MapFS{}
	real, err := embedded.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range real[:1] {
		b, err := embedded.ReadFile("migrations/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		fsys["m/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	for name, sql := range extra {
		fsys["m/"+name] = &fstest.MapFile{Data: []byte(sql)}
	}
	migs, err := loadMigrations(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

// versions lists schema_migrations.
func versions(t *testing.T, db *DB) []int {
	t.Helper()
	var vs []int
	err := db.View(context.Background(), func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), "SELECT version FROM schema_migrations ORDER BY version")
		if err != nil {
			return err
		}
		vs, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func tableExists(t *testing.T, db *DB, name string) bool {
	t.Helper()
	var ok bool
	err := db.View(context.Background(), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestMigrateAppliesOnce(t *testing.T) {
	db, _ := migrated(t)
	want := []int{}
	for i := range db.migrations {
		want = append(want, i+1)
	}
	if got := versions(t, db); !slices.Equal(got, want) {
		t.Fatalf("after Migrate: versions %v, want %v", got, want)
	}
	// A restart migrates again: nothing to do, no error.
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, db); !slices.Equal(got, want) {
		t.Fatalf("after a second Migrate: versions %v, want %v", got, want)
	}
}

// TestMigrateConcurrently: two nodes starting at once both migrate; one
// applies, the other waits for it and finds nothing to do. The first is
// held inside its migration until the second is seen waiting for the
// lock (or, without the lock, has raced ahead and created the tables
// itself).
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	a, b := openTest(t, dsn, nil), openTest(t, dsn, nil)
	extra := withMigrations(t, map[string]string{"0002_widgets.sql": "CREATE TABLE widgets (id bigint PRIMARY KEY)"})
	a.migrations, b.migrations = extra, extra

	inA := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	a.midMigration = func(*pgx.Conn) {
		once.Do(func() {
			close(inA)
			<-release
		})
	}
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { errA <- a.Migrate(ctx) }()
	<-inA
	go func() { errB <- b.Migrate(ctx) }()

	// Wait until b waits for a lock (the migration lock; without it, the
	// table a is creating), or returns.
	waiting, stop := make(chan struct{}), make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(30 * time.Second)
		for {
			var n int
			err := pgxQueryRow(ctx, dsn, "SELECT count(*) FROM pg_locks WHERE NOT granted", &n)
			if err != nil || n > 0 {
				close(waiting)
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			case <-deadline:
				close(waiting)
				return
			}
		}
	}()
	var bErr error
	bDone := false
	select {
	case <-waiting:
	case bErr = <-errB:
		bDone = true
	}
	close(release)
	if err := <-errA; err != nil {
		t.Errorf("first Migrate: %v", err)
	}
	if !bDone {
		bErr = <-errB
	}
	if bErr != nil {
		t.Errorf("second Migrate: %v", bErr)
	}
	if got := versions(t, a); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("versions %v, want [1 2]", got)
	}
}

// pgxQueryRow runs one query on a connection of its own.
func pgxQueryRow(ctx context.Context, dsn, sql string, dst any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, sql).Scan(dst)
}

// TestMigrateRefusesNewerSchema: after a newer Heed migrated the
// database, an older binary must not start on it.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	newer := openTest(t, dsn, nil)
	newer.migrations = withMigrations(t, map[string]string{"0002_from_the_future.sql": "CREATE TABLE future (id bigint)"})
	if err := newer.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	older := openTest(t, dsn, nil)
	older.migrations = withMigrations(t, nil)
	err := older.Migrate(ctx)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Migrate of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	for _, s := range []string{"version 2", "from_the_future", "up to 1"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the refusal %q does not say %q", err, s)
		}
	}
	if !tableExists(t, older, "future") {
		t.Fatal("the newer schema's table is gone")
	}
}

// TestFailedMigrationLeavesNothing: a migration that fails half-way is
// neither applied nor recorded; those before it stay, and the next start
// with a corrected file applies it.
func TestFailedMigrationLeavesNothing(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	db := openTest(t, dsn, nil)
	db.migrations = withMigrations(t, map[string]string{
		"0002_good.sql": "CREATE TABLE good (id bigint)",
		"0003_bad.sql":  "CREATE TABLE half (id bigint); INSERT INTO half VALUES (1); SELECT no_such_column FROM half",
	})
	err := db.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "0003_bad") {
		t.Fatalf("Migrate with a failing migration: %v, want an error naming 0003_bad", err)
	}
	if got := versions(t, db); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("versions %v, want [1 2]", got)
	}
	if !tableExists(t, db, "good") || tableExists(t, db, "half") {
		t.Fatal("want table good and no table half")
	}
	db.migrations = withMigrations(t, map[string]string{
		"0002_good.sql": "CREATE TABLE good (id bigint)",
		"0003_bad.sql":  "CREATE TABLE half (id bigint); INSERT INTO half VALUES (1)",
	})
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, db); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("versions %v, want [1 2 3]", got)
	}
}

// TestInterruptedMigrationIsRetried: a connection lost in the middle of
// a migration (a crash, a restart of the server) leaves none of it, so
// the next start applies it whole instead of tripping over half of it.
func TestInterruptedMigrationIsRetried(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.DSN(t), nil)
	db.migrations = withMigrations(t, map[string]string{"0002_two_tables.sql": "CREATE TABLE one (id bigint); CREATE TABLE two (id bigint)"})
	db.midMigration = func(conn *pgx.Conn) {
		var in0002 bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass('two') IS NOT NULL").Scan(&in0002); err == nil && in0002 {
			// The session ends here, as if the node crashed.
			conn.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
		}
	}
	if err := db.Migrate(ctx); err == nil {
		t.Fatal("Migrate whose connection died: no error")
	}
	db.midMigration = nil
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("Migrate after an interrupted migration: %v", err)
	}
	if got := versions(t, db); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("versions %v, want [1 2]", got)
	}
}

// TestMigrateRefusesChangedMigration: a released migration edited in a
// later binary would leave databases migrated before and after with
// different schemas under one version number.
func TestMigrateRefusesChangedMigration(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, pgtest.DSN(t), nil)
	db.migrations = withMigrations(t, map[string]string{"0002_a.sql": "CREATE TABLE a (id bigint)"})
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db.migrations = withMigrations(t, map[string]string{"0002_a.sql": "CREATE TABLE a (id bigint, extra text)"})
	err := db.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "0002_a differs") {
		t.Fatalf("Migrate with an edited migration: %v, want a refusal", err)
	}
}

func TestLoadMigrationsRejects(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"gap":      {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"bad name": {"m/0001_a.sql": {}, "m/2_b.sql": {}},
		"none":     {"m/README": nil}, // a stray file is refused too
	} {
		if _, err := loadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := loadMigrations(embedded, "migrations"); err != nil {
		t.Fatalf("the embedded migrations: %v", err)
	}
}
