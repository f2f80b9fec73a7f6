package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
)

// csvRows is the size of the CSV of BenchmarkSuppressionCSV.
const csvRows = 1_000_000

// BenchmarkSuppressionCSV streams a 1,000,000-row CSV (address,list,reason:
// opt-outs of all marketing and of single lists, bounces, blocks) from a
// file through suppression.ImportCSV into a fresh store (Import1M), then
// exports that store to io.Discard (Export1M). It reports rows per second
// (target ≥ 100,000 for the import) and, for the import, the peak Go heap
// and resident set sampled every 100 ms (target under 200 MiB: the import
// streams, so memory must not grow with the file). Anonymous RSS is the
// figure to hold to the target; the whole RSS also counts the pages of the
// database file mapped by bbolt, which the kernel can drop. Run it with
// -benchtime 1x.
func BenchmarkSuppressionCSV(b *testing.B) {
	if testing.Short() {
		b.Skip("BenchmarkSuppressionCSV imports 1,000,000 rows; skipped under -short")
	}
	dir := b.TempDir()
	csvPath := filepath.Join(dir, "suppressions.csv")
	writeSuppressionCSV(b, csvPath)
	var (
		db   *store.DB
		s    *suppression.Service
		runs int
	)
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	// load imports the CSV into a fresh store, replacing the last one.
	load := func(b *testing.B) (suppression.ImportReport, time.Duration, memPeaks) {
		if db != nil {
			db.Close()
			os.Remove(db.Path())
		}
		runs++
		var err error
		db, err = store.Open(filepath.Join(dir, fmt.Sprintf("supp%d.db", runs)), store.Options{SkipCheck: true})
		if err != nil {
			b.Fatal(err)
		}
		s = boltdb.Suppressions(db, []byte("bench suppression address key 32"), nil)
		f, err := os.Open(csvPath)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		runtime.GC()
		m := startMemSampler(100 * time.Millisecond)
		b.StartTimer()
		start := time.Now()
		rep, err := suppression.ImportCSV(context.Background(), s, "t001", f, suppression.ImportOptions{})
		el := time.Since(start)
		b.StopTimer()
		peaks := m.stop()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Rows != csvRows || rep.Added != csvRows || rep.Rejected != 0 {
			b.Fatalf("report: %+v", rep)
		}
		return rep, el, peaks
	}

	b.Run("Import1M", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			_, el, p := load(b)
			rate := csvRows / el.Seconds()
			fi, err := os.Stat(db.Path())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(rate, "rows/s")
			b.ReportMetric(mib(p.heap), "peak_heap_MiB")
			b.ReportMetric(mib(p.anon), "peak_anon_rss_MiB")
			b.ReportMetric(mib(p.rss), "peak_rss_MiB")
			line := fmt.Sprintf("suppression CSV import, %d rows from a file: %.1f s, %.0f rows/s (target ≥ 100,000); peak Go heap %.0f MiB, peak anonymous RSS %.0f MiB (target < 200 MiB), peak RSS with the mapped database %.0f MiB; file %.0f MB",
				csvRows, el.Seconds(), rate, mib(p.heap), mib(p.anon), mib(p.rss), float64(fi.Size())/(1<<20))
			b.Log(line)
			addSummary("%s", line)
		}
	})

	b.Run("Export1M", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			if db == nil {
				load(b)
				b.StopTimer()
			}
			runtime.GC()
			b.StartTimer()
			start := time.Now()
			n, err := suppression.ExportCSV(context.Background(), s, "t001", io.Discard, suppression.ExportOptions{})
			el := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if n != csvRows {
				b.Fatalf("exported %d rows; want %d", n, csvRows)
			}
			rate := float64(n) / el.Seconds()
			b.ReportMetric(rate, "rows/s")
			line := fmt.Sprintf("suppression CSV export, %d rows to io.Discard: %.1f s, %.0f rows/s", n, el.Seconds(), rate)
			b.Log(line)
			addSummary("%s", line)
		}
	})
}

// writeSuppressionCSV writes the benchmark's CSV: one row per address, in
// address order (not the store's key order, which is by keyed hash).
func writeSuppressionCSV(b *testing.B, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "address,list,reason")
	for i := range csvRows {
		list, reason := "*", "unsubscribe"
		switch i % 10 {
		case 6, 7:
			list = "news"
		case 8:
			reason = "bounce"
		case 9:
			list, reason = "promo", "manual"
		}
		fmt.Fprintf(w, "user%07d@domain%d.example,%s,%s\n", i, i%997, list, reason)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// memPeaks are the highest Go heap in use, RSS and anonymous RSS seen.
type memPeaks struct{ heap, rss, anon uint64 }

type memSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	p    memPeaks
}

// startMemSampler samples the process's memory every interval until stop.
func startMemSampler(interval time.Duration) *memSampler {
	m := &memSampler{done: make(chan struct{})}
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		all, anon := rss()
		m.p.heap = max(m.p.heap, ms.HeapInuse)
		m.p.rss, m.p.anon = max(m.p.rss, all), max(m.p.anon, anon)
	}
	sample()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample()
			case <-m.done:
				sample()
				return
			}
		}
	}()
	return m
}

func (m *memSampler) stop() memPeaks {
	close(m.done)
	m.wg.Wait()
	return m.p
}
