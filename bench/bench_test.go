// Package bench holds Heed's end-to-end benchmarks. Each benchmark does one
// fixed-size measured run per iteration (run them with -benchtime 1x, as
// `make bench` does) and prints its figures: b.ReportMetric puts them on the
// benchmark line and a summary block is printed once all benchmarks ran.
// docs/benchmarks.md explains each figure.
package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/server"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testsink"
)

const (
	// messageSize is the size of every message, headers included.
	messageSize = 4096
	// clients is the number of concurrent SMTP client connections.
	clients = 20
	// adminToken is the operator token of the relay under test.
	adminToken = "bench-operator-token-0123456789ab"
	// sender is the envelope and header sender; its domain is added to the
	// tenant through the admin API.
	sender = "hello@bench.test"
	// rcptDomain is routed to the sink.
	rcptDomain = "example.net"
	// benchDomainConcurrency is delivery.domain_concurrency in the main
	// scenarios: every message goes to one domain (example.net), so the
	// default of 20 would cap deliveries at 20 concurrent transactions to
	// the sink, the same as the number of submitting clients. 64 leaves the
	// delivery side room to catch up after a burst; the "default" scenario
	// measures 20.
	benchDomainConcurrency = 64
	// singleCommitWindow is how long the single-commit baseline runs.
	singleCommitWindow = time.Second
)

// summary collects the lines printed after all benchmarks ran.
var (
	summaryMu sync.Mutex
	summary   []string
)

func addSummary(format string, args ...any) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	summary = append(summary, fmt.Sprintf(format, args...))
}

func TestMain(m *testing.M) {
	// The relay runs in this process, so it gets the Ps `heed serve` would
	// give it on this machine (server.Procs); the load generator and the
	// sink share them, as they share the cores.
	procs, why := server.Procs()
	if procs != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(procs)
	}
	addSummary("GOMAXPROCS %d on %d CPUs (%s), as heed serve would run", procs, runtime.NumCPU(), why)
	// pgtest.Run stops the PostgreSQL cluster of the PostgreSQL runs.
	code := pgtest.Run(m)
	if len(summary) > 0 {
		fmt.Println()
		fmt.Println("=== Heed benchmark summary ===")
		for _, l := range summary {
			fmt.Println(l)
		}
		fmt.Println()
	}
	os.Exit(code)
}

// scenario is one end-to-end run.
type scenario struct {
	name              string
	messages          int  // per run
	newConnPerMessage bool // dial and AUTH for every message
	domainConcurrency int
	// signed registers the sending domain through the admin API, which
	// gives it an RSA-2048 and an Ed25519 key: every copy is signed twice.
	// Unsigned runs measure the relay core (issue 2's figures).
	signed bool
	// list is the X-Heed-List of every message ("" = transactional).
	list string
	// keepBodies makes the sink keep what it receives, for a benchmark
	// that checks it; otherwise it keeps only envelopes, as Postfix's
	// smtp-sink does, so the harness does not spend the relay's CPU on
	// holding every body.
	keepBodies bool
	// rcpts is the number of recipients per message (default 1); the
	// figures of a run with several count copies delivered.
	rcpts int
	// rounds is the number of relay runs per iteration (default 1). With
	// the machine reference, each is bracketed by a reference sample and
	// the median of the rounds' shares is reported: one run's share
	// moves by a few points with the machine.
	rounds int
	// postgres runs the relay on storage.driver postgres, on the
	// benchmark's own PostgreSQL cluster (postgres_test.go), and compares
	// it with the bbolt run of the scenario named base in the same run.
	postgres bool
	base     string
	// nodes is how many relays share the PostgreSQL database (issue 17's
	// BenchmarkCluster; default 1): each its own process state, listeners
	// and data directory in this process, the clients spread over them
	// and every node delivering to the one sink.
	nodes int
}

// BenchmarkEndToEnd submits 4 KiB messages through the real submission
// listener (fsync on: the spool file, its directory and the bbolt commit
// are durable before each 250) with 20 concurrent clients, and waits for
// every one to reach a go-smtp sink on loopback. In the same run it
// measures the rate of single fsync'd bbolt commits on the same disk.
// These runs send from a domain without DKIM keys: they measure the relay
// core; BenchmarkSigned measures the whole pipeline.
func BenchmarkEndToEnd(b *testing.B) {
	for _, sc := range []scenario{
		{name: "ReusedConn", messages: 10000, domainConcurrency: benchDomainConcurrency, rounds: 3},
		{name: "ReusedConnPostgres", base: "ReusedConn", postgres: true, messages: 10000, domainConcurrency: benchDomainConcurrency, rounds: 3},
		{name: "NewConnPerMessage", messages: 4000, newConnPerMessage: true, domainConcurrency: benchDomainConcurrency},
		{name: "NewConnPerMessagePostgres", base: "NewConnPerMessage", postgres: true, messages: 4000, newConnPerMessage: true, domainConcurrency: benchDomainConcurrency},
		{name: "ReusedConnDefaultDomainConcurrency", messages: 10000, domainConcurrency: 20},
	} {
		b.Run(sc.name, func(b *testing.B) { runEndToEnd(b, sc) })
	}
}

// result is what one end-to-end run measured.
type result struct {
	messages  int
	accepted  time.Duration // start → last 250
	delivered time.Duration // start → the sink holds every message
	// cpu is the process's user+system CPU time from the start until the
	// run saw the last delivery (a moment after delivered ends): relay,
	// clients, sink and the runtime's own work together. Per message it
	// tells a change that saves work from one that does not, in runs
	// taken in alternation (it moves with the machine's speed too).
	cpu       time.Duration
	latencies []time.Duration
	// sessions is, for new-connection runs, dial → 250 per message
	// (connect, EHLO, AUTH, transaction, without QUIT).
	sessions []time.Duration
	// pg is what the PostgreSQL server did for the run (postgres runs).
	pg *pgStats
}

func runEndToEnd(b *testing.B, sc scenario) {
	var all []result
	// The machine reference brackets the relay runs (see reference_test.go);
	// signed runs also report the RSA signing rate.
	var ref reference
	b.StopTimer()
	ref.measure(b, sc.newConnPerMessage)
	for range b.N * max(sc.rounds, 1) {
		b.StopTimer()
		env := startRelay(b, sc)
		probe := env.probe(b)
		b.StartTimer()
		r := env.run(b, sc)
		b.StopTimer()
		env.shutdown()
		r.pg = probe.read(b)
		all = append(all, r)
		ref.measure(b, sc.newConnPerMessage)
	}
	// The baseline runs after the relay is shut down, on the same disk,
	// so the two do not compete for it.
	single := singleCommitRate(b, singleCommitWindow)

	var n int
	var acc, del, cpu time.Duration
	var lat, sess []time.Duration
	var pg pgStats
	for _, r := range all {
		pg.add(r.pg)
		n += r.messages
		acc += r.accepted
		del += r.delivered
		cpu += r.cpu
		lat = append(lat, r.latencies...)
		sess = append(sess, r.sessions...)
	}
	accRate := float64(n) / acc.Seconds()
	delRate := float64(n) / del.Seconds()
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	b.ReportMetric(accRate, "accepted_msgs/s")
	b.ReportMetric(delRate, "msgs/s")
	b.ReportMetric(ms(p50), "p50_ms")
	b.ReportMetric(ms(p99), "p99_ms")
	cpuPerMsg := float64(cpu.Microseconds()) / float64(n)
	b.ReportMetric(cpuPerMsg, "cpu_µs/msg")
	b.ReportMetric(single, "single_commits/s")
	b.ReportMetric(accRate/single, "x_single_commit")

	mode := fmt.Sprintf("reused connections (%d clients)", clients)
	if sc.postgres {
		mode = "PostgreSQL, " + mode
	}
	if sc.nodes > 1 {
		mode = fmt.Sprintf("%d nodes, ", sc.nodes) + mode
	}
	if sc.signed {
		list := sc.list
		if list == "" {
			list = "transactional"
		}
		mode = fmt.Sprintf("DKIM RSA-2048 + Ed25519, %s list, %s", list, mode)
	}
	if sc.newConnPerMessage {
		mode = strings.Replace(mode, fmt.Sprintf("reused connections (%d clients)", clients),
			fmt.Sprintf("new connection + AUTH per message (%d clients)", clients), 1)
	}
	if sc.rcpts > 1 {
		mode += fmt.Sprintf(", %d recipients per message (msg figures count copies delivered)", sc.rcpts)
	}
	count := fmt.Sprint(n)
	if len(all) > 1 {
		count = fmt.Sprintf("%d runs × %d", len(all), sc.messages)
	}
	line := fmt.Sprintf("%s, domain_concurrency %d, %s × 4 KiB: accepted %.0f msg/s, delivered %.0f msg/s, time to 250 (MAIL FROM → 250) p50 %.1f ms p99 %.1f ms, process CPU %.0f µs/msg (relay, clients and sink)",
		mode, sc.domainConcurrency, count, accRate, delRate, ms(p50), ms(p99), cpuPerMsg)
	if len(sess) > 0 {
		s50, s99 := percentile(sess, 0.50), percentile(sess, 0.99)
		b.ReportMetric(ms(s50), "session_p50_ms")
		b.ReportMetric(ms(s99), "session_p99_ms")
		line += fmt.Sprintf("; dial → 250 p50 %.1f ms p99 %.1f ms", ms(s50), ms(s99))
	}
	// Above 1 the relay accepts more messages per second than the disk
	// does single fsync'd commits: group commit is what makes that
	// possible. Below 1 each message still costs more than one such commit.
	base := fmt.Sprintf("  single fsync'd bbolt commits (same run, same disk): %.0f/s → accepted/single-commit ratio %.2fx (group commit buys this; >1 means it pays off end to end)", single, accRate/single)
	if sc.signed {
		// Signing dominates a signed message's CPU; the ceiling is the
		// machine's RSA-2048 signing rate, measured after the relay
		// stopped, on all cores.
		rsa := rsaSignRate(b, time.Second)
		b.ReportMetric(rsa, "rsa_signs/s")
		b.ReportMetric(100*delRate/rsa, "pct_of_rsa_rate")
		base += fmt.Sprintf("\n  RSA-2048 signatures alone, signer %s (same run, %d goroutines): %.0f/s → delivered signed msgs/s is %.0f%% of the signing rate",
			dkim.RSASigner(), runtime.GOMAXPROCS(0), rsa, 100*delRate/rsa)
	}
	rates := make([]float64, len(all))
	for i, r := range all {
		rates[i] = float64(r.messages) / r.delivered.Seconds()
	}
	base += "\n  " + ref.report(b, sc, rates)
	if sc.signed && !sc.postgres {
		signedMu.Lock()
		signedRates[sc.name] = delRate
		signedMu.Unlock()
	}
	bb := backendRun{accepted: accRate, delivered: delRate, p99: ms(p99)}
	if sc.postgres {
		base += "\n  " + pg.report(b, n, bb, sc.base)
	} else {
		recordBbolt(sc.name, bb)
	}
	b.Log(line)
	b.Log(base)
	addSummary("%s\n%s", line, base)
}

// relayEnv is a running relay, its sink and an SMTP credential.
type relayEnv struct {
	relay      *server.Relay
	shutdown   func() // Shutdown once, whether the run ends or fails
	sink       *testsink.Sink
	user, pass string
	dataDir    string
	dsn        string // the PostgreSQL database of a postgres run
	// others are the nodes after the first of a cluster run; dialled
	// takes turns over every node's submission listener.
	others  []*server.Relay
	dialled atomic.Int64

	target    atomic.Int64 // deliveries to wait for
	delivered atomic.Int64
	done      chan struct{} // closed when delivered reaches target
	doneAt    atomic.Int64  // UnixNano of that moment
}

func startRelay(b *testing.B, sc scenario) *relayEnv {
	b.Helper()
	env := &relayEnv{done: make(chan struct{})}
	// The sink's DATA hook counts deliveries, so the time the last one
	// arrived is taken there rather than after Wait copies every message.
	env.sink = testsink.Start(b, testsink.Options{Discard: !sc.keepBodies, Reply: func(stage, _, _ string, _ int) *smtp.SMTPError {
		if stage == testsink.StageData {
			if env.delivered.Add(1) == env.target.Load() {
				env.doneAt.Store(time.Now().UnixNano())
				close(env.done)
			}
		}
		return nil
	}})

	cfg := config.Default()
	cfg.Hostname = "relay.test"
	cfg.DataDir = filepath.Join(b.TempDir(), "data")
	cfg.SMTP.Submission.Listen = "127.0.0.1:0"
	cfg.SMTP.Submission.ImplicitTLSListen = ""
	cfg.HTTP.Admin.Listen = "127.0.0.1:0"
	cfg.HTTP.Public.Listen, cfg.SMTP.Inbound.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.Tokens = []string{adminToken}
	cfg.Delivery.Mode = config.ModeMX
	cfg.Delivery.Routes = map[string]string{rcptDomain: env.sink.Addr()}
	cfg.Delivery.DomainConcurrency = sc.domainConcurrency
	cfg.ReturnPathDomain = "bounces.relay.test"
	cfg.Unsubscribe.MailtoDomain = "unsubscribe.relay.test"
	cfg.HTTP.Public.BaseURL = "https://unsubscribe.relay.test"
	if sc.postgres {
		cfg.Storage.Driver = config.DriverPostgres
		env.dsn = benchCluster(b).NewDatabase(b)
		cfg.Storage.Postgres.DSN = env.dsn
	}
	if err := cfg.Validate(); err != nil {
		b.Fatalf("config: %v", err)
	}
	// The default log level (info), as heed serve runs: every message's
	// log lines are formatted, then discarded rather than written.
	relay, err := server.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		b.Fatalf("server.Start: %v", err)
	}
	env.relay, env.dataDir = relay, cfg.DataDir
	env.shutdown = sync.OnceFunc(relay.Shutdown)
	b.Cleanup(env.shutdown)
	admin := relay.AdminAddr()
	api(b, admin, "/api/v1/tenants", map[string]string{"id": "bench", "name": "Bench", "postal_address": "1 Bench St, Testville"})
	if sc.signed {
		api(b, admin, "/api/v1/tenants/bench/domains", map[string]string{"domain": "bench.test"})
	} else {
		// Registered without keys, as domains were before signing.
		err := relay.Tenants().AddDomain(context.Background(), tenant.Domain{Name: "bench.test", Tenant: "bench", CreatedAt: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
	}
	cred := api(b, admin, "/api/v1/tenants/bench/credentials", map[string]string{})
	env.user, _ = cred["username"].(string)
	env.pass, _ = cred["password"].(string)
	if env.user == "" || env.pass == "" {
		b.Fatalf("credential response without username or password: %v", cred)
	}
	env.startOthers(b, sc, *cfg)
	return env
}

// startOthers starts nodes 2 to sc.nodes of a cluster run on the first
// node's database, each with a data directory and listeners of its own;
// they find the tenant and credential the first node made there.
func (env *relayEnv) startOthers(b *testing.B, sc scenario, cfg config.Config) {
	var stops []func()
	for i := 2; i <= sc.nodes; i++ {
		c := cfg
		c.DataDir = filepath.Join(b.TempDir(), "data")
		c.Node = fmt.Sprintf("bench-%d", i)
		r, err := server.Start(&c, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
		if err != nil {
			b.Fatalf("node %d: server.Start: %v", i, err)
		}
		env.others = append(env.others, r)
		stops = append(stops, r.Shutdown)
	}
	if len(stops) > 0 {
		first := env.shutdown
		env.shutdown = sync.OnceFunc(func() {
			var wg sync.WaitGroup
			for _, stop := range append(stops, first) {
				wg.Go(stop)
			}
			wg.Wait()
		})
		b.Cleanup(env.shutdown)
	}
}

func api(b *testing.B, admin, path string, body any) map[string]any {
	b.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+admin+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("POST %s: %s %s", path, resp.Status, out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		b.Fatalf("POST %s: %v", path, err)
	}
	return m
}

// message builds message i: exactly messageSize bytes, CRLF lines, on
// list ("" = the default, transactional).
func message(i int, list string) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "From: Bench <%s>\r\n", sender)
	if list != "" {
		fmt.Fprintf(&buf, "X-Heed-List: %s\r\n", list)
	}
	fmt.Fprintf(&buf, "To: rcpt-%d@%s\r\n", i, rcptDomain)
	fmt.Fprintf(&buf, "Subject: Benchmark message %d\r\n", i)
	fmt.Fprintf(&buf, "Message-ID: <bench-%d@bench.test>\r\n", i)
	fmt.Fprintf(&buf, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	buf.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	const line = "The quick brown fox jumps over the lazy dog, then sends a receipt email.\r\n"
	for buf.Len()+len(line) <= messageSize {
		buf.WriteString(line)
	}
	if pad := messageSize - buf.Len(); pad > 0 {
		if pad > 2 {
			buf.WriteString(strings.Repeat("x", pad-2))
		}
		buf.WriteString("\r\n"[:min(pad, 2)])
	}
	return buf.Bytes()
}

// send runs one transaction on c and returns MAIL FROM → 250 after DATA.
func send(c *smtp.Client, i, rcpts int, msg []byte) (time.Duration, error) {
	t0 := time.Now()
	if err := c.Mail(sender, nil); err != nil {
		return 0, fmt.Errorf("MAIL: %w", err)
	}
	for j := range rcpts {
		if err := c.Rcpt(fmt.Sprintf("rcpt-%d-%d@%s", i, j, rcptDomain), nil); err != nil {
			return 0, fmt.Errorf("RCPT: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return 0, fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return 0, fmt.Errorf("DATA write: %w", err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("end of DATA: %w", err)
	}
	return time.Since(t0), nil
}

func (env *relayEnv) dial() (*smtp.Client, error) {
	addr := env.relay.SubmissionAddr()
	if n := int64(len(env.others)); n > 0 {
		if i := env.dialled.Add(1) % (n + 1); i > 0 {
			addr = env.others[i-1].SubmissionAddr()
		}
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", env.user, env.pass)); err != nil {
		c.Close()
		return nil, fmt.Errorf("AUTH: %w", err)
	}
	return c, nil
}

// run submits sc.messages messages from clients goroutines and waits until
// the sink has them all.
func (env *relayEnv) run(b *testing.B, sc scenario) result {
	n := sc.messages
	per := max(sc.rcpts, 1)
	env.target.Store(int64(n * per))
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = message(i, sc.list)
	}
	res := result{messages: n * per, latencies: make([]time.Duration, n)}
	if sc.newConnPerMessage {
		res.sessions = make([]time.Duration, n)
	}

	// Reused connections dial and authenticate before the clock starts,
	// as a pool does once; new-connection clients dial inside it.
	conns := make([]*smtp.Client, clients)
	if !sc.newConnPerMessage {
		for g := range conns {
			c, err := env.dial()
			if err != nil {
				b.Fatalf("client %d: %v", g, err)
			}
			conns[g] = c
		}
	}

	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		firstE error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstE == nil {
			firstE = err
		}
		errMu.Unlock()
	}
	cpu0 := processCPU()
	start := time.Now()
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[g]
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					break
				}
				if sc.newConnPerMessage {
					t0 := time.Now()
					var err error
					if c, err = env.dial(); err != nil {
						fail(fmt.Errorf("message %d: %w", i, err))
						return
					}
					d, err := send(c, i, per, msgs[i])
					if err != nil {
						c.Close()
						fail(fmt.Errorf("message %d: %w", i, err))
						return
					}
					res.sessions[i] = time.Since(t0)
					res.latencies[i] = d
					c.Quit()
					continue
				}
				d, err := send(c, i, per, msgs[i])
				if err != nil {
					fail(fmt.Errorf("message %d: %w", i, err))
					return
				}
				res.latencies[i] = d
			}
			if !sc.newConnPerMessage {
				c.Quit()
			}
		}()
	}
	wg.Wait()
	res.accepted = time.Since(start)
	if firstE != nil {
		b.Fatalf("submission: %v", firstE)
	}
	select {
	case <-env.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("the sink got %d of %d messages within 5 minutes", env.delivered.Load(), n*per)
	}
	res.delivered = time.Unix(0, env.doneAt.Load()).Sub(start)
	res.cpu = processCPU() - cpu0
	if got := len(env.sink.Wait(b, n*per, time.Minute)); got < n*per {
		b.Fatalf("the sink holds %d of %d messages", got, n*per)
	}
	return res
}

// singleCommitRate measures sequential bbolt transactions, each writing one
// 4 KiB value and fsyncing, on a fresh store in b.TempDir() for about d:
// what every durable write would cost without group commit.
func singleCommitRate(b *testing.B, d time.Duration) float64 {
	b.Helper()
	db, err := store.Open(filepath.Join(b.TempDir(), "single.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := bytes.Repeat([]byte{'v'}, messageSize)
	bucket := []byte("bench")
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		err := db.Bolt().Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			return bk.Put(key(n), val)
		})
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkGroupCommit compares 20 goroutines committing through
// store.DB.Update (the group committer: one fsync per batch) with
// sequential bbolt transactions (one fsync each), each writing a 4 KiB
// value, on the same disk.
func BenchmarkGroupCommit(b *testing.B) {
	const (
		writers   = clients
		perWriter = 250 // 5,000 commits per run
	)
	val := bytes.Repeat([]byte{'v'}, messageSize)
	bucket := []byte("bench")
	var grouped, seq []float64
	for range b.N {
		b.StopTimer()
		db, err := store.Open(filepath.Join(b.TempDir(), "group.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := db.Bolt().Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		el, err := parallel(writers, perWriter, func(w, i int) error {
			k := key(w*perWriter + i)
			return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, val) })
		})
		b.StopTimer()
		db.Close()
		if err != nil {
			b.Fatal(err)
		}
		grouped = append(grouped, float64(writers*perWriter)/el.Seconds())
		seq = append(seq, singleCommitRate(b, singleCommitWindow))
	}
	g, s := mean(grouped), mean(seq)
	b.ReportMetric(g, "group_commits/s")
	b.ReportMetric(s, "single_commits/s")
	b.ReportMetric(g/s, "x_single_commit")
	line := fmt.Sprintf("group commit, %d goroutines × %d store.DB.Update (4 KiB each): %.0f commits/s; sequential fsync'd bbolt Update: %.0f/s → %.1fx",
		writers, perWriter, g, s, g/s)
	b.Log(line)
	addSummary("%s", line)
}

// BenchmarkSpoolFsync measures the ceiling file bodies put on accepted
// mail: 20 goroutines each writing a 4 KiB body through queue.Spool with
// inlining off (file fsync, then the shared directory fsync; the bbolt
// commit comes on top), on the same disk.
func BenchmarkSpoolFsync(b *testing.B) {
	const (
		writers   = clients
		perWriter = 100 // 2,000 files per run
	)
	val := bytes.Repeat([]byte{'v'}, messageSize)
	var rates []float64
	for range b.N {
		b.StopTimer()
		spool, err := queue.OpenSpool(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		spool.InlineMax = 0 // every body through a file, as before inline bodies
		b.StartTimer()
		el, err := parallel(writers, perWriter, func(w, i int) error {
			body := spool.NewBody(fmt.Sprintf("%d-%d", w, i))
			if _, err := body.Write(val); err != nil {
				return err
			}
			return body.Sync()
		})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		rates = append(rates, float64(writers*perWriter)/el.Seconds())
	}
	r := mean(rates)
	b.ReportMetric(r, "files/s")
	line := fmt.Sprintf("spool file bodies, %d goroutines × %d (queue.Spool: create, write 4 KiB, fsync, shared dir fsync): %.0f files/s", writers, perWriter, r)
	b.Log(line)
	addSummary("%s", line)
}

// parallel runs fn(w, i) for perWriter values of i in each of writers
// goroutines and returns the wall time and the first error.
func parallel(writers, perWriter int, fn func(w, i int) error) (time.Duration, error) {
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if err := fn(w, i); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	err, _ := failed.Load().(error)
	return el, err
}

func key(n int) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(n))
	return k
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// percentile is the nearest-rank percentile of ds (which it sorts).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// suppressed counts the bench tenant's suppressions through the admin API.
func (env *relayEnv) suppressed(b *testing.B) int {
	b.Helper()
	n, cursor := 0, ""
	for {
		req, _ := http.NewRequest("GET", "http://"+env.relay.AdminAddr()+"/api/v1/tenants/bench/suppressions?limit=1000&cursor="+cursor, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var page struct {
			Suppressions []json.RawMessage `json:"suppressions"`
			Cursor       string            `json:"cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		n += len(page.Suppressions)
		if page.Cursor == "" {
			return n
		}
		cursor = page.Cursor
	}
}
