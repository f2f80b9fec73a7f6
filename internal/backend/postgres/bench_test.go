package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// TestBenchHelpers: what the benchmarks load with BenchFillSuppressions
// is found through the store, behind the indexes it had, and the probe
// counts the statements, commits and WAL of the writes made under it.
func TestBenchHelpers(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Start(t, pgtest.Options{Settings: []string{"shared_preload_libraries=pg_stat_statements"}})
	t.Cleanup(func() { c.Close() })
	dsn := c.NewDatabase(t)
	db, err := Open(ctx, Config{DSN: dsn, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := Suppressions(db.Backend(), []byte("0123456789abcdef0123456789abcdef"), time.Now)
	addr := func(i int) string { return fmt.Sprintf("u%d@example.net", i) }
	const n = 1000
	err = BenchFillSuppressions(ctx, dsn, n, func(i int) (suppression.Row, error) {
		return s.Row(suppression.Entry{Tenant: "acme", Address: addr(i), List: suppression.All, Reason: suppression.Bounce, Channel: "dsn"})
	})
	if err != nil {
		t.Fatal(err)
	}
	var indexes int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE tablename = 'suppressions'").Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	if indexes != 3 {
		t.Errorf("%d indexes on suppressions after the fill, want the 3 it had", indexes)
	}
	vs, err := suppression.CheckAll(ctx, s, "acme", "news", tenant.Marketing, []string{addr(0), addr(n - 1), addr(n)})
	if err != nil {
		t.Fatal(err)
	}
	if !vs[0].Hit || !vs[1].Hit || vs[2].Hit {
		t.Errorf("verdicts %+v, want the first two suppressed", vs)
	}

	p, err := StartBenchProbe(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Add(ctx, suppression.Entry{Tenant: "acme", Address: addr(n + i), List: suppression.All, Reason: suppression.Manual}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	st, err := p.Read(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if st.Statements < 5*3 || st.Commits < 5 || st.WALBytes <= 0 || st.WALSyncs < 1 || len(st.Top) == 0 {
		t.Errorf("after 5 Adds: %+v", st)
	}
	t.Logf("5 Adds: %d statements, %d commits, %d WAL bytes, %d WAL syncs", st.Statements, st.Commits, st.WALBytes, st.WALSyncs)
}
