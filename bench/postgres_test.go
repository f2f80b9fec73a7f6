package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
)

// The PostgreSQL runs use a cluster of their own, started once per
// benchmark binary by pgtest (initdb into a temporary directory, a Unix
// socket, this machine's disk) with fsync and synchronous_commit on, as
// pgtest always starts them: a 250 comes after a flushed COMMIT, as in
// production. It shares the cores with the relay, the clients and the
// sink.
var pgSettings = []string{
	// Statements per message and the top statements.
	"shared_preload_libraries=pg_stat_statements",
	// pgtest's 32MB suits tests; a server that carries mail has more.
	// 256MB is still modest (PostgreSQL's guidance is a quarter of RAM).
	"shared_buffers=256MB",
	// The 10 M-entry load rebuilds its indexes in memory.
	"maintenance_work_mem=512MB",
	"max_wal_size=4GB",
}

var (
	pgOnce    sync.Once
	pgCluster *pgtest.Cluster
)

// benchCluster returns the benchmarks' cluster, starting it on first use;
// without PostgreSQL installed the PostgreSQL runs skip (fail under CI=1).
func benchCluster(b *testing.B) *pgtest.Cluster {
	b.Helper()
	pgOnce.Do(func() {
		pgCluster = pgtest.Start(b, pgtest.Options{Settings: pgSettings})
		addSummary("PostgreSQL: a throwaway cluster on this machine's disk, fsync=on, synchronous_commit=on, %s", strings.Join(pgSettings, ", "))
	})
	if pgCluster == nil {
		b.Skip("no PostgreSQL cluster (see the first PostgreSQL benchmark's message)")
	}
	return pgCluster
}

// backendRun is what the summary compares between the backends.
type backendRun struct {
	accepted, delivered float64 // msg/s
	p99                 float64 // time to 250, ms
}

var (
	bboltMu   sync.Mutex
	bboltRuns = map[string]backendRun{}
)

// recordBbolt keeps a bbolt run's figures for the PostgreSQL run of the
// same scenario, later in the same process.
func recordBbolt(name string, r backendRun) {
	bboltMu.Lock()
	bboltRuns[name] = r
	bboltMu.Unlock()
}

// pgProbe measures one relay run on PostgreSQL; nil for a bbolt run.
type pgProbe struct {
	p    *postgres.BenchProbe
	pid  int           // the postmaster's
	cpu0 time.Duration // the server's CPU time at the start
}

func (env *relayEnv) probe(b *testing.B) *pgProbe {
	if env.dsn == "" {
		return nil
	}
	p, err := postgres.StartBenchProbe(context.Background(), env.dsn)
	if err != nil {
		b.Fatalf("pg_stat_statements: %v", err)
	}
	pid := benchCluster(b).PID()
	return &pgProbe{p: p, pid: pid, cpu0: serverCPU(pid)}
}

// read is called after the relay shut down: the server's counters are
// complete once its sessions have ended.
func (p *pgProbe) read(b *testing.B) *pgStats {
	if p == nil {
		return nil
	}
	st, err := p.p.Read(context.Background(), 8)
	if err != nil {
		b.Fatalf("reading the server's statistics: %v", err)
	}
	return &pgStats{BenchStats: st, runs: 1, cpu: serverCPU(p.pid) - p.cpu0}
}

// pgStats sums the server's statistics over the rounds of a scenario.
type pgStats struct {
	postgres.BenchStats
	runs int
	// cpu is the server's CPU time over the run (serverCPU): the figure
	// a server's size follows once its flushes are shared.
	cpu time.Duration
}

func (s *pgStats) add(o *pgStats) {
	if o == nil {
		return
	}
	s.Statements += o.Statements
	s.Commits += o.Commits
	s.Rollbacks += o.Rollbacks
	s.WALBytes += o.WALBytes
	s.WALWrites += o.WALWrites
	s.WALSyncs += o.WALSyncs
	s.runs += o.runs
	s.cpu += o.cpu
	if s.Top == nil {
		s.Top = o.Top // the first round's: they rank alike from round to round
	}
}

// report prints the server's figures per message (accept and delivery
// together: everything the database did for the run) and the ratio to
// the bbolt run of scenario base.
func (s *pgStats) report(b *testing.B, msgs int, pg backendRun, base string) string {
	per := func(x int64) float64 { return float64(x) / float64(msgs) }
	b.ReportMetric(per(s.Statements), "pg_stmts/msg")
	b.ReportMetric(per(s.Commits), "pg_commits/msg")
	b.ReportMetric(per(s.Rollbacks), "pg_rollbacks/msg")
	b.ReportMetric(per(s.WALBytes), "pg_wal_B/msg")
	b.ReportMetric(per(s.WALSyncs), "pg_wal_syncs/msg")
	b.ReportMetric(per(s.cpu.Microseconds()), "pg_cpu_µs/msg")
	var out strings.Builder
	fmt.Fprintf(&out, "PostgreSQL server, per message (accept + delivery, %d runs): %.1f statements, %.2f commits, %.2f rollbacks, %.0f WAL bytes, %.3f WAL flushes (wal_sync; %.1f commits share one flush), server CPU %.0f µs",
		s.runs, per(s.Statements), per(s.Commits), per(s.Rollbacks), per(s.WALBytes), per(s.WALSyncs), float64(s.Commits)/float64(max(s.WALSyncs, 1)), per(s.cpu.Microseconds()))
	bboltMu.Lock()
	bb, ok := bboltRuns[base]
	bboltMu.Unlock()
	if ok {
		b.ReportMetric(pg.delivered/bb.delivered, "x_bbolt")
		fmt.Fprintf(&out, "\n  bbolt, same run (%s): accepted %.0f msg/s, delivered %.0f msg/s, p99 time to 250 %.1f ms → PostgreSQL/bbolt: accepted %.2fx, delivered %.2fx, p99 %.2fx",
			base, bb.accepted, bb.delivered, bb.p99, pg.accepted/bb.accepted, pg.delivered/bb.delivered, pg.p99/bb.p99)
	} else {
		fmt.Fprintf(&out, "\n  (no bbolt run of %s in this process to compare with: run both)", base)
	}
	out.WriteString("\n  top statements by execution time (first run):")
	for _, t := range s.Top {
		q := t.Query
		if len(q) > 110 {
			q = q[:110] + "…"
		}
		fmt.Fprintf(&out, "\n    %7d calls %8.0f ms  %s", t.Calls, t.TotalMs, q)
	}
	return out.String()
}
