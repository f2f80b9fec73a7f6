package bench

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/suppression"
)

// suppPgLookups is the number of lookups per reader on PostgreSQL: each
// is a round trip to the server, so fewer than on bbolt give as firm a
// p99 in a reasonable time.
const suppPgLookups = 25_000

// BenchmarkSuppressionPostgres is BenchmarkSuppression on PostgreSQL: the
// same 10,000,000 entries (100 tenants × 100,000, mixed scopes and
// reasons) written by COPY into the suppressions table of the benchmark
// cluster (postgres.BenchFillSuppressions, indexes rebuilt afterwards),
// then suppression.Check through the store, from 2 goroutines, each
// answer checked against the policy. A first pass warms the server's
// buffers and the machine's page cache; the second is the result (target
// p99 < 1 ms). It also times CheckAll for a message of 50 recipients,
// the accept's one query.
func BenchmarkSuppressionPostgres(b *testing.B) {
	if testing.Short() {
		b.Skip("BenchmarkSuppressionPostgres loads 10,000,000 entries into PostgreSQL (minutes); skipped under -short")
	}
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		dsn := benchCluster(b).NewDatabase(b)
		db, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		s := postgres.Suppressions(db.Backend(), []byte("bench suppression address key 32"), nil)
		start := time.Now()
		err = postgres.BenchFillSuppressions(ctx, dsn, suppTenants*suppPerTenant, func(i int) (suppression.Row, error) {
			return s.Row(suppEntry(i/suppPerTenant, i%suppPerTenant))
		})
		if err != nil {
			b.Fatal(err)
		}
		load := time.Since(start)
		runtime.GC()
		queries := suppQueriesN(suppPgLookups)
		coldRate, cold := checkSuppressions(b, s, queries)
		b.StartTimer()
		rate, lat := checkSuppressions(b, s, queries)
		b.StopTimer()
		all50 := checkAll50(b, s)
		db.Close()

		total := suppTenants * suppPerTenant
		p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
		a50, a99 := percentile(all50, 0.50), percentile(all50, 0.99)
		b.ReportMetric(rate, "lookups/s")
		b.ReportMetric(suppMicros(p50), "p50_us")
		b.ReportMetric(suppMicros(p99), "p99_us")
		b.ReportMetric(suppMicros(percentile(cold, 0.99)), "cold_p99_us")
		b.ReportMetric(suppMicros(a99), "checkall50_p99_us")
		b.ReportMetric(load.Seconds(), "load_s")
		line := fmt.Sprintf("suppression on PostgreSQL, %d entries (%d tenants): COPY and index build %.0f s; Check from %d goroutines, warm: %.0f lookups/s, p50 %.0f µs, p99 %.0f µs (target < 1 ms); first pass: %.0f lookups/s, p99 %.0f µs; CheckAll of a 50-recipient message (one query): p50 %.0f µs, p99 %.0f µs",
			total, suppTenants, load.Seconds(), suppReaders, rate, suppMicros(p50), suppMicros(p99),
			coldRate, suppMicros(percentile(cold, 0.99)), suppMicros(a50), suppMicros(a99))
		b.Log(line)
		addSummary("%s", line)
	}
}

// checkAll50 times suppression.CheckAll for 2,000 messages of 50
// recipients each (half of them suppressed in the store), checking the
// number suppressed.
func checkAll50(b *testing.B, s suppression.Store) []time.Duration {
	ctx := context.Background()
	lat := make([]time.Duration, 2000)
	for m := range lat {
		t := m % suppTenants
		addrs := make([]string, 50)
		want := 0
		for j := range addrs {
			i := (m*50 + j*2) % (2 * suppPerTenant) // i >= suppPerTenant: not in the store
			e := suppEntry(t, i)
			addrs[j] = e.Address
			if i < suppPerTenant && suppression.Applies(e, "news", "marketing") {
				want++
			}
		}
		t0 := time.Now()
		vs, err := suppression.CheckAll(ctx, s, fmt.Sprintf("t%03d", t), "news", "marketing", addrs)
		lat[m] = time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for _, v := range vs {
			if v.Hit {
				got++
			}
		}
		if got != want {
			b.Fatalf("CheckAll of message %d: %d suppressed, want %d", m, got, want)
		}
	}
	return lat
}
