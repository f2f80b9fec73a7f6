// Package heedproc runs the real heed binary in tests, for the end-to-end
// tests of cmd/heed and the multi-process tests of test/cluster: the
// binary built once per test binary, each process's output kept and shown
// when its test fails, and the small waits such tests share.
package heedproc

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var binDir string

var build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "heed-bin")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "heed")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/heedmail/heed/cmd/heed").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// Binary builds ./cmd/heed on first use and returns its path; in -short
// runs it skips the test instead.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the heed binary")
	}
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Cleanup removes the binary Binary built, if any; a TestMain calls it
// after the tests have run.
func Cleanup() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Proc is a running heed process.
type Proc struct {
	Cmd *exec.Cmd
	// Out is what the process has written to stdout and stderr.
	Out *SyncBuffer
	// Exited is closed once the process has exited and been waited for.
	Exited chan struct{}
}

// Start runs the heed binary with args in dir, env added to its
// environment (nil: the test's own), its output also copied to tee (if
// not nil). When t ends the process is killed, and its output logged
// under name if t failed.
func Start(t testing.TB, name, dir string, env []string, tee io.Writer, args ...string) *Proc {
	t.Helper()
	p := &Proc{Out: &SyncBuffer{}, Exited: make(chan struct{})}
	p.Cmd = exec.Command(Binary(t), args...)
	if env != nil {
		p.Cmd.Env = append(os.Environ(), env...)
	}
	p.Cmd.Dir = dir
	var w io.Writer = p.Out
	if tee != nil {
		w = io.MultiWriter(p.Out, tee)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = w, w
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.Cmd.Wait(); close(p.Exited) }()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.Exited
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", name, p.Cmd.Process.Pid, p.Out.String())
		}
	})
	return p
}

// SyncBuffer is a process's output, written by its pipe's goroutine and
// read by the test's.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WaitFor polls cond until it holds, failing t once timeout has passed.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// FreePort is a free TCP port on ip, as host:port.
func FreePort(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listening on %s (Linux routes all of 127.0.0.0/8 to loopback): %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}
