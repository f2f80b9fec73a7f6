package bench

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/dkim"
)

// BenchmarkSigned is BenchmarkEndToEnd with every copy composed for its
// recipient and signed with the domain's RSA-2048 and Ed25519 keys, as
// production runs, in the two shapes issue 20 set targets for:
// transactional mail to 10 recipients per message (headers only, nothing
// personalised: the copies share one signature) over reused connections,
// and marketing mail (List-Unsubscribe with a per-recipient token, footer)
// on a new connection per message. It prints the machine's RSA-2048
// signing rate with the build's signer and the machine reference, both
// measured in the same run.
//
// The same scenarios are then run by a child `go test -tags heed_purego`,
// the build with Go's signer, and the two are printed side by side.
func BenchmarkSigned(b *testing.B) {
	for _, sc := range signedScenarios {
		b.Run(sc.name, func(b *testing.B) { runEndToEnd(b, sc) })
	}
	if os.Getenv(childEnv) != "" {
		return
	}
	// Marketing on PostgreSQL, beside the bbolt run above.
	b.Run("MarketingPostgres", func(b *testing.B) { runEndToEnd(b, marketingPostgres) })
	if strings.HasPrefix(dkim.RSASigner(), "go ") {
		return
	}
	b.Run("PureGoSigner", func(b *testing.B) {
		for range b.N {
			comparePureGo(b)
		}
	})
}

// signedScenarios are BenchmarkSigned's runs.
var signedScenarios = []scenario{
	{name: "Transactional", messages: 1000, rcpts: 10, domainConcurrency: benchDomainConcurrency, signed: true},
	{name: "Marketing", messages: 4000, newConnPerMessage: true, domainConcurrency: benchDomainConcurrency, signed: true, list: "marketing"},
}

// marketingPostgres is the Marketing scenario on PostgreSQL; the child
// process of the pure-Go build does not run it.
var marketingPostgres = scenario{name: "MarketingPostgres", base: "Marketing", postgres: true, messages: 4000,
	newConnPerMessage: true, domainConcurrency: benchDomainConcurrency, signed: true, list: "marketing"}

// childEnv marks a benchmark process started by another one.
const childEnv = "HEED_BENCH_CHILD"

// deliveredRate reads the delivered rate of each BenchmarkSigned scenario
// from a benchmark's output.
var deliveredRate = regexp.MustCompile(`(?m)^BenchmarkSigned/(\w+)-\d+\s.*?\s([\d.]+) msgs/s`)

// comparePureGo runs BenchmarkSigned's scenarios in the pure-Go build and
// prints its figures beside this process's, as ratios.
func comparePureGo(b *testing.B) {
	cmd := exec.Command("go", "test", "-tags", "heed_purego", "-run", "^$", "-bench", "^BenchmarkSigned$",
		"-benchtime", "1x", "-timeout", "20m", ".")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	raw, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("the pure-Go build's run: %v\n%s", err, raw)
	}
	child := map[string]float64{}
	for _, m := range deliveredRate.FindAllStringSubmatch(string(raw), -1) {
		child[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	// The child's summary follows its own banner; keep its lines.
	_, summary, _ := strings.Cut(string(raw), "=== Heed benchmark summary ===")
	lines := []string{"pure-Go signer build (-tags heed_purego), run right after in a child process:"}
	for _, l := range strings.Split(strings.TrimSpace(summary), "\n") {
		if strings.Contains(l, "DKIM") || strings.HasPrefix(l, "  ") {
			lines = append(lines, "  "+l)
		}
	}
	signedMu.Lock()
	for _, sc := range signedScenarios {
		here, ok := signedRates[sc.name]
		if g := child[sc.name]; ok && g > 0 {
			lines = append(lines, fmt.Sprintf("  %s: %s %.0f msg/s, go crypto/rsa %.0f msg/s → %.2fx",
				sc.name, dkim.RSASigner(), here, g, here/g))
			b.ReportMetric(here/g, "x_"+sc.name)
		}
	}
	signedMu.Unlock()
	for _, l := range lines {
		b.Log(l)
	}
	addSummary("%s", strings.Join(lines, "\n"))
}

// signedRates holds this process's delivered rate per signed scenario,
// for comparePureGo.
var (
	signedMu    sync.Mutex
	signedRates = map[string]float64{}
)

// rsaSignRate is how many RSA-2048 PKCS#1 v1.5 SHA-256 signatures the
// build's signer (dkim.RSASigner) makes per second on GOMAXPROCS
// goroutines, for about d.
func rsaSignRate(b *testing.B, d time.Duration) float64 {
	b.Helper()
	gen, err := dkim.Generate(dkim.RSA)
	if err != nil {
		b.Fatal(err)
	}
	der, err := dkim.MarshalPrivate(gen)
	if err != nil {
		b.Fatal(err)
	}
	key, err := dkim.ParsePrivate(der)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					panic(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// BenchmarkFanOut sends one newsletter to 1,000 recipients in one SMTP
// transaction and waits until the sink holds every personalised, signed
// copy: the messages/s a newsletter is delivered at.
func BenchmarkFanOut(b *testing.B) {
	const rcpts = 1000
	var rates []float64
	var accept time.Duration
	for range b.N {
		b.StopTimer()
		env := startRelay(b, scenario{domainConcurrency: benchDomainConcurrency, signed: true, keepBodies: true})
		env.target.Store(rcpts)
		c, err := env.dial()
		if err != nil {
			b.Fatal(err)
		}
		msg := message(0, "marketing")
		b.StartTimer()
		start := time.Now()
		if err := c.Mail(sender, nil); err != nil {
			b.Fatal(err)
		}
		for i := range rcpts {
			if err := c.Rcpt(fmt.Sprintf("reader-%d@%s", i, rcptDomain), nil); err != nil {
				b.Fatal(err)
			}
		}
		w, err := c.Data()
		if err != nil {
			b.Fatal(err)
		}
		w.Write(msg)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		accept += time.Since(start)
		select {
		case <-env.done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("the sink got %d of %d copies within 5 minutes", env.delivered.Load(), rcpts)
		}
		el := time.Unix(0, env.doneAt.Load()).Sub(start)
		b.StopTimer()
		msgs := env.sink.Wait(b, rcpts, time.Minute)
		checkPersonalised(b, msgs[0].Data, msgs[1].Data)
		c.Quit()
		env.shutdown()
		rates = append(rates, rcpts/el.Seconds())
	}
	r := mean(rates)
	b.ReportMetric(r, "msgs/s")
	b.ReportMetric(ms(accept)/float64(b.N), "accept_ms")
	line := fmt.Sprintf("newsletter fan-out: one 4 KiB marketing message to %d recipients in one transaction, each copy with its own token, footer and two signatures: delivered %.0f msgs/s (accepted in %.0f ms)",
		rcpts, r, ms(accept)/float64(b.N))
	b.Log(line)
	addSummary("%s", line)
}

// checkPersonalised fails the benchmark unless two copies carry
// different unsubscribe links and both are signed: a fan-out that sent
// one copy to all would be fast and wrong.
func checkPersonalised(b *testing.B, a, c []byte) {
	b.Helper()
	link := func(m []byte) string {
		s := string(m)
		i := strings.Index(s, "https://unsubscribe.relay.test/u/")
		if i < 0 || !strings.Contains(s, "DKIM-Signature:") {
			b.Fatalf("a copy without a link or a signature:\n%s", m)
		}
		j := strings.IndexAny(s[i:], ">\r\n")
		return s[i : i+j]
	}
	if link(a) == link(c) {
		b.Fatal("two recipients got the same unsubscribe link")
	}
}
