package console_test

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/consoleusers"
)

// TestSignInThrottled: past the attempts a username may make in the
// window, the next attempt is refused before its password is checked
// (the right password is refused too, so a guesser learns nothing),
// until the window has passed; a client is limited across usernames.
func TestSignInThrottled(t *testing.T) {
	e := newEnv(t, func(o *console.Options) {
		o.MaxAttemptsPerUser, o.MaxAttemptsPerClient, o.AttemptWindow = 3, 6, 15*time.Minute
	})
	en := e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	c := e.client()
	for i := range 3 {
		if st, body := e.password(c, "ops", "guess"); st != http.StatusUnauthorized || !strings.Contains(body, "Wrong username or password") {
			t.Fatalf("wrong attempt %d: %d", i+1, st)
		}
	}
	st, body := e.password(c, "ops", en.Password)
	if st != http.StatusTooManyRequests || !strings.Contains(body, "Too many sign-in attempts") {
		t.Fatalf("the 4th attempt, with the right password: %d, want 429 unchecked", st)
	}
	e.clock.Add(15 * time.Minute)
	if st, _ := e.password(c, "ops", en.Password); st != http.StatusSeeOther {
		t.Fatalf("after the window, the right password: %d, want 303 to the code", st)
	}

	// A client is held to its own limit across usernames: with the
	// window passed again, six names, then a seventh is refused.
	e.clock.Add(15 * time.Minute)
	for i, name := range []string{"a", "b", "c", "d", "e", "f"} {
		if st, _ := e.password(c, name, "guess"); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d for %s: %d", i+1, name, st)
		}
	}
	if st, _ := e.password(c, "g", "guess"); st != http.StatusTooManyRequests {
		t.Fatalf("a 7th username from one client: %d, want 429", st)
	}
}

// TestAllowNetworks: a client outside console.allow_networks gets a 403
// on every page, the sign-in and the stylesheet included; inside, the
// pages carry the strict Content-Security-Policy.
func TestAllowNetworks(t *testing.T) {
	closed := newEnv(t, func(o *console.Options) { o.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	for _, path := range []string{"/console/", "/console/sign-in", "/console/static/console.css"} {
		if st, body, _ := closed.get(closed.client(), path); st != http.StatusForbidden || !strings.Contains(body, "not open to your network") {
			t.Errorf("%s from outside the networks: %d", path, st)
		}
	}
	open := newEnv(t, func(o *console.Options) { o.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	resp, err := open.client().Get(open.srv.URL + "/console/sign-in")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("from inside: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, c := range resp.Cookies() {
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
			t.Errorf("cookie %s: HttpOnly %v, SameSite %v", c.Name, c.HttpOnly, c.SameSite)
		}
	}
}

// TestSignInsDoNotSpendAttempts: the limits count wrong guesses. An
// operator who signs in, out and in again many times in one window (two
// steps each, past the five attempts of the limit) is never refused.
func TestSignInsDoNotSpendAttempts(t *testing.T) {
	e := newEnv(t, func(o *console.Options) {
		o.MaxAttemptsPerUser, o.MaxAttemptsPerClient, o.AttemptWindow = 5, 20, 15*time.Minute
	})
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	for i := range 6 {
		c := e.signedIn("ops") // fails the test on a 429
		if st, _, _ := e.get(c, "/console/overview"); st != http.StatusOK {
			t.Fatalf("sign-in %d: the overview answers %d", i+1, st)
		}
	}
}

// TestWrongPasswordsElsewhereDoNotLockOut: an attacker who knows the
// operator's username (a tenant's user does) spends its allowance with
// wrong passwords from another address; the operator, at the address
// they last signed in from, still signs in. The attacker stays refused.
func TestWrongPasswordsElsewhereDoNotLockOut(t *testing.T) {
	e := newEnv(t, func(o *console.Options) {
		o.MaxAttemptsPerUser, o.MaxAttemptsPerClient, o.AttemptWindow = 3, 20, 15*time.Minute
	})
	en := e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.signedIn("ops") // from 127.0.0.1

	attacker := e.client()
	attacker.Transport = &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}
	for range 3 {
		if st, _ := e.password(attacker, "ops", "guess"); st == http.StatusSeeOther {
			t.Fatal("a wrong password from 127.0.0.2 was taken")
		}
	}
	if st, _ := e.password(attacker, "ops", en.Password); st != http.StatusTooManyRequests {
		t.Fatalf("the attacker's 4th attempt: %d, want 429", st)
	}
	e.signedIn("ops") // fails the test on a 429
}
