package postgres

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// skewTable makes the table of the classic write-skew anomaly: two
// transactions each read both rows and write one.
func skewTable(t *testing.T, db *DB) {
	t.Helper()
	err := db.Update(context.Background(), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "CREATE TABLE skew (id int PRIMARY KEY, v int NOT NULL); INSERT INTO skew VALUES (1, 0), (2, 0)")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// commitRival reads both rows and writes row 2 in a SERIALIZABLE
// transaction of its own, committed while the caller's is open, so that
// the caller's write to row 1 closes a dangerous cycle and fails
// (PostgreSQL docs, "Serializable Isolation Level").
func commitRival(ctx context.Context, db *DB) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var sum int
	if err := tx.QueryRow(ctx, "SELECT sum(v) FROM skew").Scan(&sum); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "UPDATE skew SET v = v + 1 WHERE id = 2"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// skewed reads both rows, lets a rival commit, then writes row 1.
func skewed(ctx context.Context, db *DB, tx pgx.Tx, rival bool) error {
	var sum int
	if err := tx.QueryRow(ctx, "SELECT sum(v) FROM skew").Scan(&sum); err != nil {
		return err
	}
	if rival {
		if err := commitRival(ctx, db); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, "UPDATE skew SET v = v + 10 WHERE id = 1")
	return err
}

func skewValues(t *testing.T, db *DB) (v1, v2 int) {
	t.Helper()
	err := db.View(context.Background(), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT (SELECT v FROM skew WHERE id = 1), (SELECT v FROM skew WHERE id = 2)").Scan(&v1, &v2)
	})
	if err != nil {
		t.Fatal(err)
	}
	return v1, v2
}

// TestUpdateRetriesSerializationFailure: a transaction that loses to a
// concurrent one is run again and commits; the caller sees success.
func TestUpdateRetriesSerializationFailure(t *testing.T) {
	ctx := context.Background()
	db, _ := migrated(t)
	skewTable(t, db)
	runs := 0
	err := db.Update(ctx, func(tx pgx.Tx) error {
		runs++
		return skewed(ctx, db, tx, runs == 1)
	})
	if err != nil {
		t.Fatalf("Update after a serialization failure: %v", err)
	}
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2", runs)
	}
	if v1, v2 := skewValues(t, db); v1 != 10 || v2 != 1 {
		t.Fatalf("rows %d, %d; want 10, 1 (each write once)", v1, v2)
	}
}

// TestUpdateGivesUp: a transaction that always loses is retried a
// bounded number of times, then reported as the conflict it is.
func TestUpdateGivesUp(t *testing.T) {
	ctx := context.Background()
	db, _ := migrated(t)
	skewTable(t, db)
	runs := 0
	err := db.Update(ctx, func(tx pgx.Tx) error {
		runs++
		return skewed(ctx, db, tx, true)
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "40001" {
		t.Fatalf("Update that always conflicts: %v, want SQLSTATE 40001", err)
	}
	if runs != maxAttempts {
		t.Fatalf("fn ran %d times, want %d", runs, maxAttempts)
	}
	if v1, v2 := skewValues(t, db); v1 != 0 || v2 != maxAttempts {
		t.Fatalf("rows %d, %d; want 0, %d: nothing of the failed transaction", v1, v2, maxAttempts)
	}
}

// TestUpdateReturnsFnError: fn's own error comes back unchanged, fn runs
// once and nothing it wrote is kept.
func TestUpdateReturnsFnError(t *testing.T) {
	ctx := context.Background()
	db, _ := migrated(t)
	skewTable(t, db)
	refused := errors.New("refused by policy")
	runs := 0
	err := db.Update(ctx, func(tx pgx.Tx) error {
		runs++
		if _, err := tx.Exec(ctx, "UPDATE skew SET v = 99"); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) || runs != 1 {
		t.Fatalf("Update: %v after %d runs, want fn's error after 1", err, runs)
	}
	if v1, v2 := skewValues(t, db); v1 != 0 || v2 != 0 {
		t.Fatalf("rows %d, %d after a failed Update; want 0, 0", v1, v2)
	}
	// A statement error is not retried either.
	runs = 0
	err = db.Update(ctx, func(tx pgx.Tx) error {
		runs++
		_, err := tx.Exec(ctx, "INSERT INTO skew VALUES (1, 0)")
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" || runs != 1 || errors.Is(err, ErrUnavailable) {
		t.Fatalf("duplicate key: %v after %d runs, want 23505 after 1", err, runs)
	}
}

func TestViewIsReadOnly(t *testing.T) {
	ctx := context.Background()
	db, _ := migrated(t)
	skewTable(t, db)
	err := db.View(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE skew SET v = 1")
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" {
		t.Fatalf("a write in View: %v, want SQLSTATE 25006 (read-only transaction)", err)
	}
}

// TestUnavailableAndRecovery: while the server is down, Update and View
// fail with ErrUnavailable (for SMTP 451 4.3.0, HTTP 503); once it is
// back, the first Update succeeds on the same DB, whose pooled
// connections all died with the old server.
func TestUnavailableAndRecovery(t *testing.T) {
	ctx := context.Background()
	c := pgtest.New(t)
	// Never ping a connection on acquiring it: the pool must cope with
	// dead connections itself, however soon after the outage it is used.
	db := openTest(t, c.NewDatabase(t), func(pc *pgxpool.Config) {
		pc.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	insert := func(v int) error {
		return db.Update(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO kept VALUES ($1)", v)
			return err
		})
	}
	if err := db.Update(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE TABLE kept (v int)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := insert(1); err != nil {
		t.Fatal(err)
	}

	// Three idle connections, which die with the server.
	var held []*pgxpool.Conn
	for range 3 {
		pc, err := db.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, pc)
	}
	for _, pc := range held {
		pc.Release()
	}
	c.Stop()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := insert(2); err != nil {
		t.Fatalf("first Update after a restart, on a pool of dead connections: %v", err)
	}

	c.Stop()
	if err := insert(3); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Update with the server down: %v, want ErrUnavailable", err)
	}
	if err := db.View(ctx, func(tx pgx.Tx) error { return nil }); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("View with the server down: %v, want ErrUnavailable", err)
	}
	if err := db.Migrate(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Migrate with the server down: %v, want ErrUnavailable", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := insert(4); err != nil {
		t.Fatalf("first Update after the server came back: %v", err)
	}
	var got []int
	if err := db.View(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT v FROM kept ORDER BY v")
		if err != nil {
			return err
		}
		got, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int{1, 2, 4}) {
		t.Fatalf("rows %v, want [1 2 4]", got)
	}
}
