package bench

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSigned is BenchmarkEndToEnd with every copy composed for its
// recipient and signed with the domain's RSA-2048 and Ed25519 keys, as
// production runs: transactional mail (headers only) and marketing mail
// (List-Unsubscribe with a per-recipient token, footer). It prints the
// machine's RSA-2048 signing rate measured in the same run.
func BenchmarkSigned(b *testing.B) {
	for _, sc := range []scenario{
		{name: "Transactional", messages: 4000, domainConcurrency: benchDomainConcurrency, signed: true},
		{name: "Marketing", messages: 4000, domainConcurrency: benchDomainConcurrency, signed: true, list: "marketing"},
	} {
		b.Run(sc.name, func(b *testing.B) { runEndToEnd(b, sc) })
	}
}

// rsaSignRate is how many RSA-2048 PKCS#1 v1.5 SHA-256 signatures the
// machine makes per second on GOMAXPROCS goroutines, for about d.
func rsaSignRate(b *testing.B, d time.Duration) float64 {
	b.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
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
				if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:]); err != nil {
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
