package server

import (
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dnstest"
	"github.com/heedmail/heed/internal/testsink"
)

// TestDoorWarning: marketing mail from a domain whose readiness report
// fails (here nothing is published at all) is delivered as always, and
// the tenant gets one domain.readiness_failed event naming the failing
// checks, not one per message; transactional mail gets none.
func TestDoorWarning(t *testing.T) {
	dns := dnstest.Start(t) // answers every name: it does not exist
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		c.Readiness.DNSServer = dns.Addr
	})
	user, pass, _ := e.tenantSetup()

	warnings := func() []map[string]any {
		var evs struct {
			Events []struct {
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			} `json:"events"`
		}
		e.api("GET", "/api/v1/tenants/acme/events?limit=1000", nil, 200, &evs)
		var out []map[string]any
		for _, ev := range evs.Events {
			if ev.Type == "domain.readiness_failed" {
				out = append(out, ev.Data)
			}
		}
		return out
	}

	e.send(user, pass, []string{"pat@example.net"}, reminderMsg)
	e.sink.Wait(t, 1, 20*time.Second)
	e.r.door.wait() // a report the transactional message started, if any
	if got := warnings(); len(got) != 0 {
		t.Fatalf("%d domain.readiness_failed events after a transactional message, want 0: %v", len(got), got)
	}
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	e.sink.Wait(t, 3, 20*time.Second) // a warning, never a refusal

	deadline := time.Now().Add(wait)
	for len(warnings()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	e.r.door.wait()
	got := warnings()
	if len(got) != 1 {
		t.Fatalf("%d domain.readiness_failed events after two marketing messages, want 1: %v", len(got), got)
	}
	if got[0]["domain"] != "acme.test" {
		t.Errorf("the warning names domain %v, want acme.test", got[0]["domain"])
	}
	if reason, _ := got[0]["reason"].(string); !containsAll(reason, "dkim", "spf", "dmarc") {
		t.Errorf("the warning's reason %q does not name the failing checks", reason)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
