package admin

import (
	"sync/atomic"
	"testing"
)

// TestRefusedWhileDown: while Unavailable says the database is down,
// the API answers 503 problem+json with Retry-After before any work (the
// bbolt database here answers, so only the refusal can give the 503);
// the probes and the OpenAPI document keep answering. Once it is back,
// the same request succeeds.
func TestRefusedWhileDown(t *testing.T) {
	var down atomic.Bool
	e := newEnvWith(t, func(o *Options) { o.Unavailable = down.Load })
	e.createTenant("acme")
	down.Store(true)
	resp, b := e.call("GET", "/api/v1/tenants/acme", "")
	problem(t, resp, b, 503)
	if got := resp.Header.Get("Retry-After"); got != "5" {
		t.Errorf("Retry-After %q, want 5", got)
	}
	for _, path := range []string{"/healthz", "/readyz", "/api/v1/openapi.json"} {
		if resp, b := e.callAs("", "GET", path, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s while down: %d %.200s, want 200", path, resp.StatusCode, b)
		}
	}
	down.Store(false)
	e.want(200, "GET", "/api/v1/tenants/acme", "", nil)
}
