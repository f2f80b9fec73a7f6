package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/webhooks"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkWebhooks drains a backlog of events to one endpoint, a real
// HTTP receiver on loopback, with 20 deliveries in flight, each attempt
// recorded (group commit) as in production. Rate: 50,000 events.
// Backlog1M: one million events, sampling the Go heap and the process's
// resident memory while they drain.
func BenchmarkWebhooks(b *testing.B) {
	b.Run("Rate", func(b *testing.B) {
		for range b.N {
			r := runWebhooks(b, 50_000)
			b.ReportMetric(r.rate, "events/s")
			line := fmt.Sprintf("webhooks: %d events to one endpoint, 20 in flight, every attempt recorded: %.0f events/s", r.n, r.rate)
			b.Log(line)
			addSummary("%s", line)
		}
	})
	b.Run("Backlog1M", func(b *testing.B) {
		for range b.N {
			r := runWebhooks(b, 1_000_000)
			b.ReportMetric(r.rate, "events/s")
			b.ReportMetric(float64(r.peakHeap)/(1<<20), "peak_heap_MiB")
			b.ReportMetric(float64(r.peakAnon)/(1<<20), "peak_anon_rss_MiB")
			b.ReportMetric(float64(r.peakRSS)/(1<<20), "peak_rss_MiB")
			line := fmt.Sprintf("webhooks: backlog of %d events drained at %.0f events/s; peak Go heap %.0f MiB, peak anonymous RSS %.0f MiB "+
				"(RSS with the mapped database file's cached pages %.0f MiB; the file is %.0f MiB at the end)",
				r.n, r.rate, float64(r.peakHeap)/(1<<20), float64(r.peakAnon)/(1<<20), float64(r.peakRSS)/(1<<20), float64(r.dbSize)/(1<<20))
			b.Log(line)
			addSummary("%s", line)
		}
	})
}

type webhookResult struct {
	n                 int
	rate              float64
	peakHeap, peakRSS uint64
	peakAnon          uint64
	dbSize            int64
}

func runWebhooks(b *testing.B, n int) webhookResult {
	b.StopTimer()
	path := filepath.Join(b.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var got atomic.Int64
	done := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("webhook-signature") == "" {
			w.WriteHeader(400)
			return
		}
		if got.Add(1) == int64(n) {
			close(done)
		}
	}))
	defer recv.Close()
	sealer, err := webhooks.NewSealer([]byte("bench server key, 32 bytes long."))
	if err != nil {
		b.Fatal(err)
	}
	st := boltdb.Webhooks(db)
	log := boltdb.Events(db)
	m := &webhooks.Manager{Store: st, Events: log, Sealer: sealer, AllowPrivate: true}
	if _, _, err := m.Create(context.Background(), "bench", "main", webhooks.Input{URL: recv.URL + "/hooks"}); err != nil {
		b.Fatal(err)
	}
	// The backlog, written before the dispatcher starts.
	now := time.Now().UTC()
	for i := 0; i < n; i += 10_000 {
		err := db.Update(func(tx *bolt.Tx) error {
			for j := i; j < min(i+10_000, n); j++ {
				ev := events.Event{Type: events.MessageDelivered, Time: now, Data: events.Data{
					Tenant: "bench", MessageID: "06h0h6ajqgpje7z8yddc8f3sn4", Recipient: "reader-" + strconv.Itoa(j) + "@example.net",
					List: "newsletter", Reply: "250 2.0.0 Ok: queued as 4Xyz", Attempts: 1,
				}}
				if err := events.Append(boltdb.TxFromBolt(tx).Events(), &ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	d := webhooks.NewDispatcher(webhooks.Options{Store: st, Events: log, Sealer: sealer, AllowPrivate: true, Concurrency: 20})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var peakHeap, peakRSS, peakAnon uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
		all, anon := rss()
		peakRSS, peakAnon = max(peakRSS, all), max(peakAnon, anon)
	}
	b.StartTimer()
	start := time.Now()
	go func() { defer close(stopped); d.Run(ctx) }()
	tick := time.NewTicker(250 * time.Millisecond)
	for wait := true; wait; {
		select {
		case <-done:
			wait = false
		case <-tick.C:
			if n >= 1_000_000 {
				sample()
			}
		case <-time.After(15 * time.Minute):
			b.Fatalf("only %d of %d events arrived", got.Load(), n)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	tick.Stop()
	sample()
	cancel()
	<-stopped
	fi, _ := os.Stat(path)
	return webhookResult{n: n, rate: float64(n) / el.Seconds(), peakHeap: peakHeap, peakRSS: peakRSS, peakAnon: peakAnon, dbSize: fi.Size()}
}

// rss is the process's resident set size and its anonymous part (the
// process's own memory, without file pages such as the mapped database),
// from /proc (Linux; 0 elsewhere).
func rss() (all, anon uint64) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	field := func(name string) uint64 {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	return field("VmRSS"), field("RssAnon")
}
