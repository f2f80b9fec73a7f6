package bench

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/suppression"
)

// BenchmarkOneClick POSTs RFC 8058 one-click unsubscribes to the real
// public listener from 50 concurrent clients, each for another recipient:
// every opt-out is on disk (group commit) before its 200. It prints
// opt-outs per second and the p99 latency, and checks afterwards that
// every one was recorded.
func BenchmarkOneClick(b *testing.B) {
	const (
		clients = 50
		n       = 10000
	)
	var rates []float64
	var lat []time.Duration
	for range b.N {
		b.StopTimer()
		env := startRelay(b, scenario{domainConcurrency: benchDomainConcurrency})
		keys, err := suppression.LoadKeyring(filepath.Join(env.dataDir, "keys", "unsubscribe"))
		if err != nil {
			b.Fatal(err)
		}
		urls := make([]string, n)
		for i := range urls {
			tok := keys.Token(suppression.Target{Tenant: "bench", List: "marketing", Address: fmt.Sprintf("reader-%d@example.net", i)})
			urls[i] = "http://" + env.relay.PublicAddr() + "/u/" + tok
		}
		tr := &http.Transport{MaxIdleConnsPerHost: clients}
		client := &http.Client{Transport: tr}
		times := make([]time.Duration, n)
		var next atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					t0 := time.Now()
					resp, err := client.Post(urls[i], "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
					if err == nil {
						io.Copy(io.Discard, resp.Body) // so the connection is reused
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						failed.Store(err)
						return
					}
					times[i] = time.Since(t0)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		tr.CloseIdleConnections()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("one-click POST: %v", err)
		}
		if got := env.suppressed(b); got != n {
			b.Fatalf("%d opt-outs recorded, want %d", got, n)
		}
		env.shutdown()
		rates = append(rates, float64(n)/el.Seconds())
		lat = append(lat, times...)
	}
	r, p99 := mean(rates), percentile(lat, 0.99)
	b.ReportMetric(r, "optouts/s")
	b.ReportMetric(ms(p99), "p99_ms")
	line := fmt.Sprintf("one-click unsubscribe, %d clients × POST /u/{token} (durable before the 200): %.0f opt-outs/s, p99 %.1f ms (target ≥ 5,000/s, p99 < 20 ms)",
		clients, r, ms(p99))
	b.Log(line)
	addSummary("%s", line)
}
