package smtpd

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/netlimit"
	"github.com/heedmail/heed/internal/testclock"
)

// authFrom makes one AUTH PLAIN attempt on a new connection from local
// and returns the reply line.
func (h *harness) authFrom(local, user, pass string) string {
	h.t.Helper()
	rc, greeting := dialFrom(h.t, local, h.addr)
	if !strings.HasPrefix(greeting, "220 ") {
		h.t.Fatalf("got %q at connect", greeting)
	}
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	rc.write("AUTH PLAIN " + plainIR(user, pass) + "\r\n")
	line := rc.reply()
	rc.c.Close()
	return line
}

// TestAuthLockout measures what a password guesser gets from one client
// address: guessing as fast as it can, over parallel connections, it has
// at most max_auth_failures_per_client passwords checked per window; after
// that every AUTH, the right password included, gets 454 4.7.0 without a
// check, so the answer says nothing about the guess. Once the window has
// passed, the right password works again.
func TestAuthLockout(t *testing.T) {
	const limit, window = 5, 15 * time.Minute
	clock := testclock.New(time.Now())
	h := newHarness(t, func(o *SubmissionOptions) {
		o.Now = clock.Now
		o.MaxAuthFailuresPerClient, o.AuthFailureWindow = limit, window
		o.MaxAuthFailures = 1000 // each reply is 535 or 454, never the closing 421
	})

	const conns, guesses = 8, 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		replies = map[string]int{}
	)
	for range conns {
		rc, _ := dialFrom(t, "127.0.0.1", h.addr)
		rc.write("EHLO app.test\r\n")
		rc.expect("250")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range guesses {
				rc.write("AUTH PLAIN " + plainIR(h.user, "guess") + "\r\n")
				line, err := rc.r.ReadString('\n')
				if err != nil {
					line = "read error: " + err.Error()
				}
				mu.Lock()
				replies[line[:min(len(line), 9)]]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if checked := replies["535 5.7.8"]; checked > limit || replies["454 4.7.0"] != conns*guesses-checked {
		t.Fatalf("%d guesses from one address got %v: want at most %d checked (535) and the rest 454 4.7.0",
			conns*guesses, replies, limit)
	}

	// During the lockout the right password is refused the same way, by
	// PLAIN and by LOGIN (before the password is even asked for).
	line := h.authFrom("127.0.0.1", h.user, h.pass)
	if !strings.HasPrefix(line, "454 4.7.0 ") || !strings.Contains(line, "from your address, try again in 15 minutes") {
		t.Fatalf("right password during the lockout got %q, want 454 4.7.0 naming the wait", line)
	}
	rc, _ := dialFrom(t, "127.0.0.1", h.addr)
	rc.write("EHLO app.test\r\nAUTH LOGIN\r\n")
	rc.expect("250")
	rc.expect("454 4.7.0 ")

	// Another address is not affected.
	if line := h.authFrom("127.0.0.2", h.user, h.pass); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("right password from another address got %q", line)
	}

	clock.Add(window - time.Second)
	if line := h.authFrom("127.0.0.1", h.user, h.pass); !strings.HasPrefix(line, "454 4.7.0 ") || !strings.Contains(line, "try again in 1 minute") {
		t.Fatalf("a second before the window ends, right password got %q, want 454 4.7.0", line)
	}
	clock.Add(time.Second)
	if line := h.authFrom("127.0.0.1", h.user, h.pass); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("after the window, right password got %q, want 235", line)
	}
	// A success clears nothing the guesser could use: the next window
	// holds the same number of checks.
	checked := 0
	for range 2 * limit {
		if strings.HasPrefix(h.authFrom("127.0.0.1", h.user, "guess"), "535 ") {
			checked++
		}
	}
	if checked != limit {
		t.Errorf("second window: %d guesses checked, want %d", checked, limit)
	}
}

// TestParallelRightPasswords: an app opening more connections at once
// than the failure limit, all with the right password, is never refused:
// checks in progress are not failures. (Whether checks overlap is up to
// the scheduler, so the burst is repeated.)
func TestParallelRightPasswords(t *testing.T) {
	const conns, rounds = 20, 5
	h := newHarness(t, func(o *SubmissionOptions) { o.MaxAuthFailuresPerClient, o.MaxAuthFailuresPerUsername = 1, 1 })
	for round := range rounds {
		rcs := make([]*rawConn, conns)
		for i := range rcs {
			rcs[i], _ = dialFrom(t, "127.0.0.1", h.addr)
			rcs[i].write("EHLO app.test\r\n")
			rcs[i].expect("250")
		}
		replies := make([]string, conns)
		var wg sync.WaitGroup
		for i, rc := range rcs {
			wg.Go(func() {
				rc.write("AUTH PLAIN " + plainIR(h.user, h.pass) + "\r\n")
				replies[i], _ = rc.r.ReadString('\n')
				rc.c.Close()
			})
		}
		wg.Wait()
		for i, line := range replies {
			if !strings.HasPrefix(line, "235 ") {
				t.Fatalf("round %d, connection %d: right password got %q", round, i, line)
			}
		}
	}
}

// TestUsernameLockout: a guesser spread over many addresses is stopped by
// the username's own limit, but cannot lock the user out of the address it
// last authenticated from.
func TestUsernameLockout(t *testing.T) {
	const perUser = 6
	h := newHarness(t, func(o *SubmissionOptions) {
		o.MaxAuthFailuresPerClient, o.MaxAuthFailuresPerUsername = 2, perUser
	})
	// The app authenticates from 127.0.0.1 before the attack.
	if line := h.authFrom("127.0.0.1", h.user, h.pass); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("got %q", line)
	}
	checked := 0
	for i := range 3 * perUser {
		addr := fmt.Sprintf("127.0.1.%d", 1+i/2) // two guesses per address, the per-address limit
		if strings.HasPrefix(h.authFrom(addr, h.user, "guess"), "535 ") {
			checked++
		}
	}
	if checked != perUser {
		t.Fatalf("guesses at one username from many addresses: %d checked, want %d", checked, perUser)
	}
	line := h.authFrom("127.0.2.1", h.user, h.pass)
	if !strings.HasPrefix(line, "454 4.7.0 ") || !strings.Contains(line, "for this username") {
		t.Fatalf("right password from a fresh address got %q, want 454 4.7.0 for this username", line)
	}
	if line := h.authFrom("127.0.0.1", h.user, h.pass); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("the address the user last authenticated from got %q, want 235", line)
	}
	if line := h.authFrom("127.0.2.1", h.user2, h.pass2); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("another username from a fresh address got %q, want 235", line)
	}
}

// TestNoSleepInServer: nothing in the SMTP server sleeps. A delayed answer
// to a wrong password told a client that gave up early that the guess was
// wrong, and held the connection's slot meanwhile; refusals are immediate.
func TestNoSleepInServer(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sleep" {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "time" {
					t.Errorf("%s: time.Sleep in the server", fset.Position(sel.Pos()))
				}
			}
			return true
		})
	}
}

// TestAuthLimiterFull: a guesser with more addresses than the limiter
// tracks is refused rather than left unlimited, until failures age out.
func TestAuthLimiterFull(t *testing.T) {
	clock := testclock.New(time.Now())
	l := newAuthLimiter(5, 20, time.Minute, clock.Now)
	for i := range maxTracked {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if why, _ := l.allow(a, "u"+strconv.Itoa(i)); why != notLocked {
			t.Fatalf("address %d refused before the table was full", i)
		}
		l.done(a, "u"+strconv.Itoa(i), true, false)
	}
	fresh := netip.MustParseAddr("192.0.2.1")
	if why, _ := l.allow(fresh, "x"); why == notLocked {
		t.Fatal("a new address was let through with the table full")
	}
	clock.Add(time.Minute)
	if why, _ := l.allow(fresh, "x"); why != notLocked {
		t.Fatal("a new address was refused after every failure aged out")
	}
}

// TestClientKey: IPv6 clients are counted by /64, IPv4 (mapped or not)
// by address.
func TestClientKey(t *testing.T) {
	key := func(s string) netip.Addr { return netlimit.Client(netip.MustParseAddr(s)) }
	if key("2001:db8::1") != key("2001:db8::ffff:1") {
		t.Error("two addresses of one /64 counted apart")
	}
	if key("2001:db8::1") == key("2001:db8:0:1::1") {
		t.Error("two /64s counted together")
	}
	if key("::ffff:192.0.2.1") != key("192.0.2.1") || key("192.0.2.1") == key("192.0.2.2") {
		t.Error("IPv4 addresses not counted one by one")
	}
}
