package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestDatabasesAreSeparateAndDropped(t *testing.T) {
	ctx := context.Background()
	c := Shared(t)
	var name string
	t.Run("first", func(t *testing.T) {
		a := connect(t, DSN(t))
		if _, err := a.Exec(ctx, "CREATE TABLE x (v int)"); err != nil {
			t.Fatal(err)
		}
		if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		b := connect(t, DSN(t))
		var n int
		if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("a second test's database sees the first one's table")
		}
		// The connections stay open: the drop must not depend on tests
		// closing them.
	})
	admin := connect(t, c.DSN("postgres"))
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if name == "" || n != 0 {
		t.Fatalf("database %q of a finished test still exists (%d)", name, n)
	}
}

// TestDurableSettings: the tests measure and rely on commits that are
// flushed, as in production.
func TestDurableSettings(t *testing.T) {
	conn := connect(t, DSN(t))
	for _, name := range []string{"fsync", "synchronous_commit"} {
		var v string
		if err := conn.QueryRow(context.Background(), "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "on" {
			t.Errorf("%s = %s, want on", name, v)
		}
	}
	var listen string
	if err := conn.QueryRow(context.Background(), "SHOW listen_addresses").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Errorf("listen_addresses = %q: the test server must not listen on TCP", listen)
	}
}

// TestSettings: a cluster started with extra settings has them (the
// benchmarks load pg_stat_statements this way), and none of them turns
// durability off.
func TestSettings(t *testing.T) {
	c := Start(t, Options{Settings: []string{"shared_preload_libraries=pg_stat_statements", "work_mem=8MB",
		"fsync=off", "synchronous_commit=off"}})
	t.Cleanup(func() { closed(c) })
	conn := connect(t, c.NewDatabase(t))
	for name, want := range map[string]string{"shared_preload_libraries": "pg_stat_statements", "work_mem": "8MB",
		"fsync": "on", "synchronous_commit": "on"} {
		var v string
		if err := conn.QueryRow(context.Background(), "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != want {
			t.Errorf("%s = %s, want %s", name, v, want)
		}
	}
}

func TestStopAndStart(t *testing.T) {
	ctx := context.Background()
	c := New(t)
	dsn := c.NewDatabase(t)
	conn := connect(t, dsn)
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if c.PID() != 0 {
		t.Fatal("PID after Stop")
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := connect(t, dsn).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after restart: %v %d", err, v)
	}
}

// helperEnv makes the test binary, run again by
// TestNoServerOutlivesABinaryThatPanics, start a cluster and panic.
const helperEnv = "HEED_PGTEST_PANIC_HELPER"

func TestPanicHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestNoServerOutlivesABinaryThatPanics")
	}
	c := Shared(t)
	fmt.Printf("server %d %s\n", c.PID(), c.Dir())
	panic("a test panics: neither Main nor any clean-up runs")
}

// TestNoServerOutlivesABinaryThatPanics: a test binary that dies of a
// panic (or a -timeout) runs no clean-up; its server must still go.
func TestNoServerOutlivesABinaryThatPanics(t *testing.T) {
	Shared(t) // skip or fail as the other tests do without PostgreSQL
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, _ := cmd.CombinedOutput()
	var pid int
	var dir string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "server" {
			pid, _ = strconv.Atoi(f[1])
			dir = f[2]
		}
	}
	if pid == 0 {
		t.Fatalf("the helper did not start a server:\n%s", out)
	}
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		if strings.Contains(dir, "heed-pgtest-") {
			os.RemoveAll(dir)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postgres (pid %d) still runs 30 s after its test binary panicked", pid)
		}
		waitABit()
	}
}

// alive reports whether pid runs; a zombie (its new parent may never reap
// it in a container) is dead.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitABit paces a poll for a condition the test cannot be told about (a
// process exiting that is not our child).
func waitABit() {
	t := time.NewTimer(20 * time.Millisecond)
	<-t.C
}

// TestSweepStale: what a binary that died left behind is removed; a
// running cluster's directory, and one being created, are not.
func TestSweepStale(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name string, pid bool) string {
		d := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if pid {
			if err := os.WriteFile(filepath.Join(d, "data", "postmaster.pid"), []byte("1\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	left, running, fresh := mk("heed-pgtest-1", false), mk("heed-pgtest-2", true), mk("heed-pgtest-3", false)
	other := mk("someone-else", false)
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{left, running, other} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	sweepStale(tmp, time.Now())
	for d, want := range map[string]bool{left: false, running: true, fresh: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}
