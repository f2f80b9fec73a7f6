package smtpd

import (
	"fmt"
	"net/netip"
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
	if !strings.HasPrefix(line, "454 4.7.0 ") || !strings.Contains(line, ", try again in 15 minutes") {
		t.Fatalf("right password during the lockout got %q, want 454 4.7.0 naming the wait", line)
	}
	rc, _ := dialFrom(t, "127.0.0.1", h.addr)
	rc.write("EHLO app.test\r\nAUTH LOGIN\r\n")
	rc.expect("250")
	rc.expect("334 ")
	rc.write(base64Std(h.user) + "\r\n")
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

// attack fills the limiter as the attack on its tables did: from each
// of many IPv6 /64s (four to a /48, the /48's limit), perClient failures,
// each with a new username. It returns the last /64's address.
func attack(l *authLimiter, clients int) netip.Addr {
	var a netip.Addr
	for i := range clients {
		a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 10), byte(i >> 2), 0, byte(i & 3), 15: 1})
		for j := range l.perClient {
			chk, _ := l.allow(a, fmt.Sprintf("u%d-%d", i, j))
			if chk == nil {
				panic(fmt.Sprintf("client %d refused at its failure %d", i, j))
			}
			l.done(chk, failedUnknown)
		}
	}
	return a
}

// loginFrom makes one AUTH LOGIN attempt on a new connection from local
// and returns the first reply that is not a 334 challenge.
func (h *harness) loginFrom(local, user, pass string) string {
	h.t.Helper()
	rc, _ := dialFrom(h.t, local, h.addr)
	defer rc.c.Close()
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	rc.write("AUTH LOGIN " + base64Std(user) + "\r\n")
	if line := rc.reply(); !strings.HasPrefix(line, "334 ") {
		return line // refused once the username is known
	}
	rc.write(base64Std(pass) + "\r\n")
	return rc.reply()
}

// TestTenantLockoutStaysWithItsTenant: behind one address (a NAT), one
// tenant's app retrying a wrong password locks that address out for
// usernames not seen there, but not another tenant's app that has
// authenticated from there before, by PLAIN or by LOGIN. That app is held
// to its own failures there instead.
func TestTenantLockoutStaysWithItsTenant(t *testing.T) {
	const limit = 5
	h := newHarness(t, func(o *SubmissionOptions) {
		o.MaxAuthFailuresPerClient = limit
		o.MaxAuthFailures = 1000
	})
	const nat = "127.0.0.7"
	if line := h.authFrom(nat, h.user2, h.pass2); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("tenant B before: got %q", line)
	}
	for range limit {
		if line := h.authFrom(nat, h.user, "stale"); !strings.HasPrefix(line, "535 ") {
			t.Fatalf("tenant A's stale password: got %q, want 535", line)
		}
	}
	for _, try := range []struct {
		what, user, pass string
		auth             func(local, user, pass string) string
	}{
		{"tenant A's right password, PLAIN", h.user, h.pass, h.authFrom},
		{"tenant A's right password, LOGIN", h.user, h.pass, h.loginFrom},
		{"a username never seen there", "nobody", "guess", h.authFrom},
	} {
		if line := try.auth(nat, try.user, try.pass); !strings.HasPrefix(line, "454 4.7.0 ") {
			t.Errorf("%s from the locked address: got %q, want 454 4.7.0", try.what, line)
		}
	}
	if line := h.authFrom(nat, h.user2, h.pass2); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("tenant B's right password by PLAIN from the address A locked: got %q, want 235", line)
	}
	if line := h.loginFrom(nat, h.user2, h.pass2); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("tenant B's right password by LOGIN from the address A locked: got %q, want 235", line)
	}
	// B's exemption is no licence to guess: its own failures there count.
	for range limit {
		if line := h.authFrom(nat, h.user2, "guess"); !strings.HasPrefix(line, "535 ") {
			t.Fatalf("guess at B from its own address: got %q, want 535", line)
		}
	}
	if line := h.authFrom(nat, h.user2, h.pass2); !strings.HasPrefix(line, "454 4.7.0 ") {
		t.Fatalf("B after %d failures of its own there: got %q, want 454 4.7.0", limit, line)
	}
}

// settled waits until user is known to have a credential and has n
// failures, none in progress: a failure is accounted after its reply.
func (l *authLimiter) settled(user string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for f := l.users[user]; f == nil || len(f.at) != n || f.pending != 0; f = l.users[user] {
		l.finished.Wait()
	}
}

// TestAuthLimiterFull: an attacker who fills the limiter's tables with
// more clients and usernames than they hold locks nobody out: a user who
// has never failed, and one under a few failures of its own, both log in
// with their passwords, while the attacker's clients stay held to their
// limit.
func TestAuthLimiterFull(t *testing.T) {
	clock := testclock.New(time.Now())
	h := newHarness(t, func(o *SubmissionOptions) { o.Now = clock.Now })
	// The other tenant's app is under a few failures of its username
	// before the attack; they are kept, however many usernames follow.
	for range 3 {
		if line := h.authFrom("127.0.0.2", h.user2, "guess"); !strings.HasPrefix(line, "535 ") {
			t.Fatalf("got %q", line)
		}
	}
	l := h.sub.auth
	l.settled(h.user2, 3)
	last := attack(l, maxTracked/l.perClient+1000)
	if l.clients.len() > maxTracked || l.strangers.len() > maxTracked {
		t.Fatalf("tables hold %d clients and %d usernames, past %d", l.clients.len(), l.strangers.len(), maxTracked)
	}
	if chk, _ := l.allow(last, "another"); chk != nil {
		t.Fatal("the attacker's last client, at its limit, was let through again")
	}
	if line := h.authFrom("127.0.0.1", h.user, h.pass); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("a user with no failures, right password, tables full: got %q, want 235", line)
	}
	if line := h.authFrom("127.0.0.3", h.user2, h.pass2); !strings.HasPrefix(line, "235 ") {
		t.Fatalf("a user with a few failures, right password, tables full: got %q, want 235", line)
	}
	if f := l.users[h.user2]; f == nil || len(f.at) != 3 {
		t.Errorf("the attack evicted the failures of a username with a credential: %+v", f)
	}
}

// TestAuthLimiterNetwork: a holder of an IPv6 /48 guessing from many of
// its /64s gets 4 times the per-client limit, not 65,536 times.
func TestAuthLimiterNetwork(t *testing.T) {
	clock := testclock.New(time.Now())
	l := newAuthLimiter(5, 1000, time.Minute, clock.Now)
	checked := 0
	for i := range 200 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, byte(i >> 8), byte(i), 15: 1})
		if chk, _ := l.allow(a, "u"+strconv.Itoa(i)); chk != nil {
			checked++
			l.done(chk, failedUnknown)
		}
	}
	if checked != 4*5 {
		t.Fatalf("one /48 had %d passwords checked, want %d", checked, 4*5)
	}
	other := netip.MustParseAddr("2001:db8:0:2::1") // the next /48 but one
	if chk, _ := l.allow(other, "x"); chk == nil {
		t.Fatal("another /48 was refused")
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
