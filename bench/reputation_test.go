package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkReputationCost prices issue 18's rates: BenchmarkSigned's
// Marketing scenario run with the rates kept (every final attempt adds to
// its tenant's hourly counters in the transaction that records it, and
// the guard judges the tenant) and not kept (Relay.KeepRates(false)),
// interleaved off, on, off, on… so that the machine's drift falls on both
// alike. It prints both delivered rates, their ratio and the cost; the
// issue's target is a cost of at most 5%.
func BenchmarkReputationCost(b *testing.B) {
	sc := signedScenarios[1] // Marketing
	const pairs = 3
	var off, on []float64
	for range b.N {
		for i := range 2 * pairs {
			keep := i%2 == 1
			b.StopTimer()
			env := startRelay(b, sc)
			env.relay.KeepRates(keep)
			b.StartTimer()
			r := env.run(b, sc)
			b.StopTimer()
			// The run is only a price of the rates if they were kept in
			// the one and not in the other.
			// (The sink has every copy a moment before the last outcome
			// commits: wait for the counts with a deadline.)
			want := int64(0)
			if keep {
				want = int64(r.messages)
			}
			final := env.finalAttempts(b)
			for deadline := time.Now().Add(30 * time.Second); final != want && time.Now().Before(deadline); final = env.finalAttempts(b) {
				time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
			}
			if final != want {
				b.Fatalf("rates kept %v: %d final attempts counted for %d messages", keep, final, r.messages)
			}
			env.shutdown()
			rate := float64(r.messages) / r.delivered.Seconds()
			if keep {
				on = append(on, rate)
			} else {
				off = append(off, rate)
			}
		}
	}
	mOff, mOn := median(off), median(on)
	ratio := mOn / mOff
	b.ReportMetric(mOff, "off_msgs/s")
	b.ReportMetric(mOn, "on_msgs/s")
	b.ReportMetric(ratio, "x_on_off")
	line := fmt.Sprintf("reputation rates, BenchmarkSigned/Marketing's scenario (%d × 4 KiB, new connection per message), %d runs each, interleaved off/on: delivered %.0f msg/s without the rates (runs %s), %.0f msg/s with them (runs %s) → ratio %.3f, cost %.1f%% (target: at most 5%%)",
		sc.messages, len(on), mOff, rates(off), mOn, rates(on), ratio, 100*(1-ratio))
	b.Log(line)
	addSummary("%s", line)
}

// finalAttempts reads the bench tenant's final attempts over 24 hours
// from GET …/reputation.
func (env *relayEnv) finalAttempts(b *testing.B) int64 {
	b.Helper()
	req, _ := http.NewRequest("GET", "http://"+env.relay.AdminAddr()+"/api/v1/tenants/bench/reputation", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct{ Windows []struct{ Final int64 } }
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || len(rep.Windows) == 0 {
		b.Fatalf("GET …/reputation: %s %v", resp.Status, err)
	}
	return rep.Windows[0].Final
}

func rates(xs []float64) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%.0f", x)
	}
	return out
}
