package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Holding returns, as "table: row", every row of every table of dsn's
// public schema in which needle occurs, ASCII case folded, in any column:
// text and JSON as they are stored, bytea as its bytes. It is how a test
// shows that a privacy erasure left an address in no table, whatever
// tables later migrations add.
func Holding(t testing.TB, dsn, needle string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT quote_ident(table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	want := bytes.ToLower([]byte(needle))
	var found []string
	for _, table := range tables {
		// Binary results: bytea arrives as its bytes, text and JSON as
		// their characters, so the needle is seen whatever the column.
		rows, err := conn.Query(ctx, "SELECT * FROM "+table)
		if err != nil {
			t.Fatalf("pgtest: %s: %v", table, err)
		}
		for rows.Next() {
			for _, v := range rows.RawValues() {
				if bytes.Contains(bytes.ToLower(v), want) {
					found = append(found, fmt.Sprintf("%s: %q", table, v))
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("pgtest: %s: %v", table, err)
		}
	}
	return found
}

// Strings runs a query on dsn and returns its first column as text, for
// tests that look at what PostgreSQL reports about itself
// (pg_stat_user_tables, ...).
func Strings(t testing.TB, dsn, sql string, args ...any) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		v, err := r.Values()
		if err != nil || len(v) == 0 {
			return "", err
		}
		return fmt.Sprint(v[0]), nil
	})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return out
}
