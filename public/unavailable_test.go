package public

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRefusedWhileDown: while Unavailable says the database is down, a
// link's page and its one-click POST answer 503 with Retry-After at once
// (the bbolt database here answers, so only the refusal can give the
// 503), recording nothing; /healthz keeps answering. Once it is back, the
// same POST records the opt-out.
func TestRefusedWhileDown(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	e := newEnvWith(t, func(o *Options) { o.Unavailable = down.Load })
	tok := e.token("acme", "marketing", "pat@example.net")
	form := url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()

	resp, _ := e.post(tok, "application/x-www-form-urlencoded", strings.NewReader(form))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("one-click POST while down: %d, Retry-After %q; want 503, 5", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	req, _ := http.NewRequest("GET", e.url+"/u/"+tok, nil)
	if resp, _ := e.do(req); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("page while down: %d, Retry-After %q; want 503, 5", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := len(e.entries("acme", "pat@example.net")); n != 0 {
		t.Errorf("%d suppressions recorded while down, want none", n)
	}
	req, _ = http.NewRequest("GET", e.url+"/healthz", nil)
	if resp, _ := e.do(req); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz while down: %d, want 200", resp.StatusCode)
	}

	down.Store(false)
	if resp, _ := e.post(tok, "application/x-www-form-urlencoded", strings.NewReader(form)); resp.StatusCode != http.StatusOK {
		t.Errorf("one-click POST once back: %d, want 200", resp.StatusCode)
	}
	if n := len(e.entries("acme", "pat@example.net")); n != 1 {
		t.Errorf("%d suppressions once back, want 1", n)
	}
}
