package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// superuser is the bootstrap role initdb creates; fixed so that the DSN
// does not depend on which OS user ran the server.
const superuser = "postgres"

// startTimeout bounds initdb plus the server's start; a loaded CI machine
// takes seconds, not minutes, so anything longer is a fault to report.
const startTimeout = 90 * time.Second

// Cluster is one throwaway PostgreSQL server: a data directory and a Unix
// socket under a private temporary directory, no TCP listener, trust
// authentication for the bootstrap superuser.
//
// The server runs as a child of the test binary with a parent-death signal
// (SIGQUIT, PostgreSQL's immediate shutdown), so it goes away with the
// binary even when the binary dies of a panic or a -timeout and no
// clean-up runs. pg_ctl start is not used for that reason: it detaches the
// server from the process that started it.
type Cluster struct {
	dir     string // private, owned by the server's user; removed by Close
	bin     string // PostgreSQL's bin directory
	cred    *syscall.Credential
	Elapsed time.Duration // how long initdb and the first start took
	opts    Options

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed when the running server has exited
	log    *os.File
}

// errNotInstalled marks the one failure that is a skip outside CI.
var errNotInstalled = errors.New("PostgreSQL is not installed")

// findBin returns the bin directory of the newest PostgreSQL under
// /usr/lib/postgresql (Debian's layout, which keeps postgres itself off
// PATH), or the directory of an initdb found on PATH.
func findBin() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVer := "", -1
	for _, m := range matches {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m))))
		if err == nil && v > bestVer {
			best, bestVer = filepath.Dir(m), v
		}
	}
	if best != "" {
		return best, nil
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", fmt.Errorf("%w: no /usr/lib/postgresql/*/bin/initdb and no initdb on PATH (Debian: apt-get install postgresql)", errNotInstalled)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return filepath.Dir(p), nil
}

// serverCredential returns the user the server must run as: PostgreSQL
// refuses to run as root, so root (as in CI) hands it to Debian's postgres
// user; anyone else runs it as themselves (nil).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user and there is no postgres user (Debian's postgresql package creates it): %v", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// checkTraversable reports a parent of dir that the server's user could
// not pass through: the server opens its data directory by full path, so
// a 0700 home directory above it fails with a confusing "permission
// denied" from initdb.
func checkTraversable(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		ok := fi.Mode().Perm()&0o001 != 0 ||
			(st.Uid == cred.Uid && fi.Mode().Perm()&0o100 != 0) ||
			(st.Gid == cred.Gid && fi.Mode().Perm()&0o010 != 0)
		if !ok {
			return fmt.Errorf("user postgres cannot traverse %s (mode %v): set TMPDIR to a directory it can reach, such as /tmp", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// Options are what a cluster may change of the defaults.
type Options struct {
	// Settings are extra server settings, "name=value" each, passed as -c
	// after the defaults so that they override them (the benchmarks'
	// shared_preload_libraries=pg_stat_statements and a production-like
	// shared_buffers). fsync and synchronous_commit stay on whatever they
	// say: a measurement without them would not be of Heed's durability.
	Settings []string
}

// newCluster runs initdb in a new temporary directory and starts the
// server. The caller owns the result and must Close it.
func newCluster(opts Options) (c *Cluster, err error) {
	began := time.Now()
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "heed-pgtest-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{dir: dir, bin: bin, cred: cred, opts: opts}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	// A Unix socket path is limited to 107 bytes (sun_path).
	if n := len(c.socketDir()) + len("/.s.PGSQL.5432"); n > 107 {
		return nil, fmt.Errorf("socket path under %s is %d bytes, longer than a Unix socket allows: set TMPDIR to a shorter directory", dir, n)
	}
	if err := checkTraversable(dir, cred); err != nil {
		return nil, err
	}
	if err := os.Mkdir(c.socketDir(), 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, p := range []string{dir, c.socketDir()} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	if c.log, err = os.Create(filepath.Join(dir, "server.log")); err != nil {
		return nil, err
	}
	// --no-sync: the cluster is thrown away; what the tests measure is the
	// server's own fsync=on at commit, not initdb's.
	initdb := c.command("initdb", "-D", c.dataDir(), "-U", superuser, "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	c.Elapsed = time.Since(began)
	return c, nil
}

func (c *Cluster) dataDir() string   { return filepath.Join(c.dir, "data") }
func (c *Cluster) socketDir() string { return filepath.Join(c.dir, "s") }

// command prepares one of PostgreSQL's programs to run as the server's
// user, with an environment that no PG* variable of the caller leaks into.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

// start runs the server and waits until it accepts connections.
func (c *Cluster) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return errors.New("pgtest: the server is already running")
	}
	args := []string{"-D", c.dataDir(),
		"-k", c.socketDir(),
		"-c", "listen_addresses=",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
		// In the data directory, so that a killed server leaves no
		// segment in /dev/shm.
		"-c", "dynamic_shared_memory_type=mmap",
		"-c", "huge_pages=off",
		"-c", "log_min_messages=warning",
	}
	for _, kv := range c.opts.Settings {
		args = append(args, "-c", kv)
	}
	// Last, so that no setting turns durability off.
	args = append(args, "-c", "fsync=on", "-c", "synchronous_commit=on")
	cmd := c.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	// The parent-death signal fires when the thread that forked the server
	// exits, not the process (prctl(2)); this goroutine keeps its thread
	// for as long as the server lives.
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %v", err)
	}
	c.proc, c.exited = cmd.Process, exited
	if err := c.waitReady(ctx, exited); err != nil {
		c.stopLocked()
		return err
	}
	return nil
}

// waitReady polls the socket until the server answers a query, the server
// exits, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, exited <-chan struct{}) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.DSN("postgres"))
		if err == nil {
			_, err = conn.Exec(cctx, "SELECT 1")
			conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during start:\n%s", c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections in %v: %v\n%s", startTimeout, err, c.logTail())
		case <-tick.C:
		}
	}
}

// logTail is the end of the server's log, for error messages.
func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// DSN is the connection string for database db on this cluster.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable",
		quoteDSN(c.socketDir()), superuser, quoteDSN(db))
}

// quoteDSN quotes a keyword/value connection string value (libpq's rules:
// single quotes, backslash escapes).
func quoteDSN(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Stop shuts the server down at once, as pg_ctl stop -m immediate does
// (SIGQUIT: no checkpoint, crash recovery at the next start), and waits
// until it has exited. The data directory stays, so Start can bring the
// same cluster back.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked()
}

func (c *Cluster) stopLocked() {
	if c.proc == nil {
		return
	}
	_ = c.proc.Signal(syscall.SIGQUIT)
	<-c.exited
	c.proc, c.exited = nil, nil
}

// StopFast shuts the server down as pg_ctl stop -m fast does (SIGINT:
// clients are disconnected, open transactions rolled back, a checkpoint
// written) and waits until it has exited; Start brings it back.
func (c *Cluster) StopFast() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return
	}
	_ = c.proc.Signal(syscall.SIGINT)
	<-c.exited
	c.proc, c.exited = nil, nil
}

// Start starts a stopped cluster again on the same socket and waits until
// it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return c.start(ctx)
}

// PID is the server's process id, 0 when it is stopped.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid
}

// Dir is the cluster's temporary directory.
func (c *Cluster) Dir() string { return c.dir }

// Close stops the server and removes its directory.
func (c *Cluster) Close() error {
	c.Stop()
	if c.log != nil {
		c.log.Close()
	}
	return os.RemoveAll(c.dir)
}

// versionOf is the major version in a bin directory's path, for messages.
func versionOf(bin string) string {
	parts := strings.Split(bin, string(filepath.Separator))
	if i := slices.Index(parts, "postgresql"); i >= 0 && i+1 < len(parts) {
		return parts[i+1]
	}
	return bin
}
