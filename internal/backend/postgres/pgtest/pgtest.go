// Package pgtest gives tests a throwaway PostgreSQL: one cluster per test
// binary, started on first use by initdb into a temporary directory and
// listening on a Unix socket only, and a fresh database per test, so tests
// can run in parallel and no test depends on a server that is already
// running.
//
// A package whose tests use it stops the cluster from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and each test asks for its database:
//
//	dsn := pgtest.DSN(t) // "host=/tmp/heed-pgtest-…/s … dbname=t_…", dropped at clean-up
//
// The binaries come from Debian's postgresql package
// (/usr/lib/postgresql/<newest>/bin) or from an initdb on PATH. PostgreSQL
// refuses to run as root: as root, the server runs as Debian's postgres
// user and its directory belongs to it. Without PostgreSQL the tests skip,
// except when the CI environment variable is set (.ci/run sets it), where
// a skip would hide that the PostgreSQL suites stopped running.
//
// The server is a child of the test binary and gets SIGQUIT (an immediate
// shutdown) when the binary dies, so a panic or a -timeout leaves no
// postgres process behind; only the temporary directory stays then, and
// the next test binary's Main removes it.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	mainCalled bool // set by Main before any test runs

	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error

	// every cluster this binary started and has not closed, so that Main
	// stops them even if a test's clean-up never ran
	liveMu sync.Mutex
	live   = map[*Cluster]bool{}
)

// Main runs the tests and then stops every cluster they started and
// removes its directory. Call it from TestMain; it does not return.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do after the tests (the
// benchmarks print a summary): it returns m.Run's code instead of exiting.
func Run(m *testing.M) int {
	mainCalled = true
	sweepStale(os.TempDir(), time.Now())
	code := m.Run()
	liveMu.Lock()
	for c := range live {
		c.Close()
	}
	liveMu.Unlock()
	return code
}

// staleAfter is how old a cluster directory without a running server
// must be before sweepStale removes it: a younger one may be a cluster
// another test binary is creating.
const staleAfter = 10 * time.Minute

// sweepStale removes the directories of clusters whose test binary died
// without clean-up (the server went with it, the directory stayed): no
// postmaster.pid, which a running server keeps and a stopped one removes,
// and not modified for staleAfter.
func sweepStale(tmp string, now time.Time) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "heed-pgtest-*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < staleAfter {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "data", "postmaster.pid")); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		os.RemoveAll(d)
	}
}

// require fails or skips t for err: a missing installation is a skip
// outside CI, anything else a failure.
func require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, errNotInstalled) && os.Getenv("CI") == "" {
		t.Skipf("skipping the PostgreSQL tests: %v", err)
	}
	t.Fatalf("pgtest: %v", err)
}

func started(c *Cluster) {
	liveMu.Lock()
	live[c] = true
	liveMu.Unlock()
}

func closed(c *Cluster) {
	liveMu.Lock()
	delete(live, c)
	liveMu.Unlock()
	c.Close()
}

// Shared returns the binary's cluster, starting it on first use.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !mainCalled {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m), which stops the cluster when the tests end")
	}
	sharedOnce.Do(func() {
		shared, sharedErr = newCluster(Options{})
		if sharedErr == nil {
			started(shared)
			t.Logf("pgtest: PostgreSQL %s cluster started in %v", versionOf(shared.bin), shared.Elapsed.Round(time.Millisecond))
		}
	})
	require(t, sharedErr)
	return shared
}

// DSN creates a new, empty database on the binary's cluster and returns
// its connection string; the database is dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	return Shared(t).NewDatabase(t)
}

// New starts a cluster of t's own, for a test that stops and restarts the
// server; it is closed when t ends. It costs a second initdb and start.
func New(t testing.TB) *Cluster {
	t.Helper()
	if !mainCalled {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m), which stops the cluster when the tests end")
	}
	c, err := newCluster(Options{})
	require(t, err)
	started(c)
	t.Logf("pgtest: PostgreSQL %s cluster started in %v", versionOf(c.bin), c.Elapsed.Round(time.Millisecond))
	t.Cleanup(func() { closed(c) })
	return c
}

// Start starts a cluster with opts that lives until Main (or Run) ends,
// for benchmarks that share one cluster of their own settings across
// several benchmark functions. It fails or skips t as DSN does.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if !mainCalled {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m) or pgtest.Run(m), which stops the cluster when the tests end")
	}
	c, err := newCluster(opts)
	require(t, err)
	started(c)
	t.Logf("pgtest: PostgreSQL %s cluster started in %v with %v", versionOf(c.bin), c.Elapsed.Round(time.Millisecond), opts.Settings)
	return c
}

// NewDatabase creates a database with a random name on c and returns its
// connection string. It is dropped, with any connection a test left
// open, when t ends.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "t_" + hex.EncodeToString(b[:])
	if err := c.admin(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if c.PID() == 0 {
			return // stopped by the test; the cluster goes with it
		}
		if err := c.admin(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// admin runs one statement on the cluster's postgres database, which no
// test uses, so that CREATE DATABASE never finds its template busy.
func (c *Cluster) admin(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
