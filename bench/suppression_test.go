package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

const (
	// suppTenants × suppPerTenant entries make the store under test.
	suppTenants   = 100
	suppPerTenant = 100_000
	// suppReaders is the number of goroutines doing lookups (one per core
	// of the reference machine), each doing suppLookups.
	suppReaders = 2
	suppLookups = 250_000
)

// suppEntry is entry i of tenant t: one entry per address, with the mix of
// scopes and reasons a mature sender has (opt-outs of all marketing
// dominate, then list opt-outs, bounces, complaints and blocks).
func suppEntry(t, i int) suppression.Entry {
	e := suppression.Entry{
		Tenant:  fmt.Sprintf("t%03d", t),
		Address: fmt.Sprintf("user%07d@domain%d.example", i, i%997),
		List:    suppression.All,
		Reason:  suppression.Unsubscribe,
		Channel: "one-click",
	}
	switch i % 10 {
	case 5:
		e.Reason, e.Channel = suppression.Bounce, "dsn"
	case 6:
		e.Reason, e.Channel = suppression.Complaint, "arf"
	case 7, 8:
		e.List = "news"
	case 9:
		e.List, e.Reason, e.Channel = "promo", suppression.Manual, "api"
	}
	if i%2 == 0 {
		e.MessageID = fmt.Sprintf("01jq3z6k9x8v7w6t5s%08d", i)
	}
	return e
}

// BenchmarkSuppression builds a suppression store of 10,000,000 entries
// (100 tenants × 100,000, mixed scopes and reasons) through
// BoltStore.Import, then runs suppression.Check — what every delivery
// attempt does — from 2 goroutines on a 50/50 mix of suppressed and
// unknown addresses, to marketing and transactional lists. It reports
// lookups per second, the p50 and p99 latency of one Check (target p99 <
// 50 µs), the database file size and the load time.
//
// Lookups run twice: cold, right after the load, when most pages of the
// 1 GB file are touched through the memory map for the first time (a
// minor page fault each, what a relay sees just after a restart); and
// warm, after one pass over the bucket, the steady state of a relay that
// has been running. The warm figures are the benchmark's result. Run it
// with -benchtime 1x: each iteration rebuilds the store.
func BenchmarkSuppression(b *testing.B) {
	if testing.Short() {
		b.Skip("BenchmarkSuppression builds a 10,000,000-entry database (about 1.1 GB, a minute or more); skipped under -short")
	}
	for range b.N {
		b.StopTimer()
		db, s, load := loadSuppressions(b)
		fi, err := os.Stat(db.Path())
		if err != nil {
			b.Fatal(err)
		}
		queries := suppQueries()
		// The load leaves gigabytes of garbage behind; collect it now so
		// the lookups measure the store, not the load's clean-up.
		runtime.GC()
		coldRate, cold := checkSuppressions(b, s, queries)
		warmSuppressions(b, db)
		runtime.GC()
		b.StartTimer()
		rate, lat := checkSuppressions(b, s, queries)
		b.StopTimer()
		db.Close()

		total := suppTenants * suppPerTenant
		p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
		coldP99 := percentile(cold, 0.99)
		mb := float64(fi.Size()) / (1 << 20)
		b.ReportMetric(rate, "lookups/s")
		b.ReportMetric(suppMicros(p50), "p50_us")
		b.ReportMetric(suppMicros(p99), "p99_us")
		b.ReportMetric(suppMicros(coldP99), "cold_p99_us")
		b.ReportMetric(mb, "file_MB")
		b.ReportMetric(load.Seconds(), "load_s")
		line := fmt.Sprintf("suppression, %d entries (%d tenants): load %.1f s (%.0f entries/s), file %.0f MB (%.0f bytes/entry); Check from %d goroutines, warm: %.0f lookups/s, p50 %.1f µs, p99 %.1f µs (target < 50 µs); cold, after the load: %.0f lookups/s, p99 %.1f µs",
			total, suppTenants, load.Seconds(), float64(total)/load.Seconds(), mb, float64(fi.Size())/float64(total),
			suppReaders, rate, suppMicros(p50), suppMicros(p99), coldRate, suppMicros(coldP99))
		b.Log(line)
		addSummary("%s", line)
	}
}

// loadSuppressions fills a fresh store, one Import per tenant in tenant
// order (so the B+tree is appended to), with two goroutines preparing
// batches while the previous one commits.
func loadSuppressions(b *testing.B) (*store.DB, *suppression.Service, time.Duration) {
	b.Helper()
	db, err := store.Open(filepath.Join(b.TempDir(), "supp.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	s := boltdb.Suppressions(db, []byte("bench suppression address key 32"), nil)
	ctx := context.Background()
	start := time.Now()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	next := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				batch := make([]suppression.Entry, suppPerTenant)
				for i := range batch {
					batch[i] = suppEntry(t, i)
				}
				n, err := s.Import(ctx, batch)
				if err == nil && n != len(batch) {
					err = fmt.Errorf("tenant %d: imported %d of %d", t, n, len(batch))
				}
				if err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
				}
			}
		}()
	}
	for t := range suppTenants {
		next <- t
	}
	close(next)
	wg.Wait()
	if ferr != nil {
		b.Fatal(ferr)
	}
	return db, s, time.Since(start)
}

// suppQuery is one lookup and the entry it should find.
type suppQuery struct {
	want       suppression.Entry
	present    bool
	list, kind string
}

// suppQueries makes each reader's lookups in advance, so that the clock
// measures Check and not fmt.Sprintf: random tenants, addresses present
// and absent half and half, one in three to a transactional list.
func suppQueries() [][]suppQuery { return suppQueriesN(suppLookups) }

// suppQueriesN is suppQueries with n lookups per reader.
func suppQueriesN(n int) [][]suppQuery {
	qs := make([][]suppQuery, suppReaders)
	for g := range qs {
		rng := rand.New(rand.NewPCG(uint64(g), 42))
		qs[g] = make([]suppQuery, n)
		for n := range qs[g] {
			t, i := rng.IntN(suppTenants), rng.IntN(2*suppPerTenant) // i >= suppPerTenant: not in the store
			q := suppQuery{want: suppEntry(t, i), present: i < suppPerTenant, list: "news", kind: tenant.Marketing}
			if n%3 == 0 {
				q.list, q.kind = "receipts", tenant.Transactional
			}
			qs[g][n] = q
		}
	}
	return qs
}

// checkSuppressions runs the lookups and returns the rate and every
// latency. Each answer is checked against the policy, so a fast wrong
// store fails rather than scores.
func checkSuppressions(b *testing.B, s suppression.Store, queries [][]suppQuery) (float64, []time.Duration) {
	ctx := context.Background()
	lat := make([][]time.Duration, len(queries))
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	start := time.Now()
	for g, qs := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls := make([]time.Duration, len(qs))
			for n, q := range qs {
				t0 := time.Now()
				got, stop, err := suppression.Check(ctx, s, q.want.Tenant, q.list, q.kind, q.want.Address)
				ls[n] = time.Since(t0)
				if err != nil {
					errs[g] = err
					return
				}
				if exp := q.present && suppression.Applies(q.want, q.list, q.kind); stop != exp || stop && got.Reason != q.want.Reason {
					errs[g] = fmt.Errorf("Check(%s, %s, %s) = %v %q, want %v %q", q.want.Tenant, q.list, q.want.Address, stop, got.Reason, exp, q.want.Reason)
					return
				}
			}
			lat[g] = ls
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for g := range queries {
		if errs[g] != nil {
			b.Fatal(errs[g])
		}
		all = append(all, lat[g]...)
	}
	return float64(len(all)) / el.Seconds(), all
}

// warmSuppressions reads every entry once, so that every page of the
// bucket is mapped, as in a relay that has run for a while.
func warmSuppressions(b *testing.B, db *store.DB) {
	var n int
	err := db.Bolt().View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketSuppressions).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n += len(k) + len(v)
		}
		return nil
	})
	if err != nil || n == 0 {
		b.Fatalf("warming the bucket: %d bytes, %v", n, err)
	}
}

func suppMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
