package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// TestRetention: a pass keeps what is younger than the cutoff and deletes
// the events, finished messages and finished webhook deliveries older than
// it; suppressions stay.
func TestRetention(t *testing.T) {
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer recv.Close()
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) { c.Webhooks.AllowPrivateTargets = true })
	user, pass, _ := e.tenantSetup()
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": recv.URL}, http.StatusCreated, nil)
	id := queuedID(t, e.send(user, pass, []string{"pat@example.net"}, reminderMsg))
	e.sink.Wait(t, 1, 20*time.Second)
	e.api("PUT", "/api/v1/tenants/acme/suppressions/sam@example.net", map[string]string{}, http.StatusCreated, nil)
	var evs struct{ Events []any }
	var hooks struct{ Deliveries []any }
	deliveries := func() int {
		e.api("GET", "/api/v1/tenants/acme/webhooks/default/deliveries?status=delivered", nil, http.StatusOK, &hooks)
		return len(hooks.Deliveries)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.api("GET", "/api/v1/tenants/acme/events", nil, http.StatusOK, &evs)
		var m struct{ Recipients []struct{ State string } }
		e.api("GET", "/api/v1/messages/"+id, nil, http.StatusOK, &m)
		if len(evs.Events) == 3 && m.Recipients[0].State == "delivered" && deliveries() == 3 {
			break // accepted, delivered, suppression.added, each sent to the endpoint
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %d, webhook deliveries %d", len(evs.Events), len(hooks.Deliveries))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	// A cutoff an hour ago: nothing is old enough.
	e.r.purge(context.Background(), time.Now().Add(-time.Hour))
	e.api("GET", "/api/v1/tenants/acme/events", nil, http.StatusOK, &evs)
	e.api("GET", "/api/v1/messages/"+id, nil, http.StatusOK, nil)
	if len(evs.Events) != 3 {
		t.Fatalf("a pass with an old cutoff deleted events: %d left", len(evs.Events))
	}
	if n := deliveries(); n != 3 {
		t.Fatalf("a pass with an old cutoff deleted webhook deliveries: %d left", n)
	}
	// As if 30 days went by.
	e.r.purge(context.Background(), time.Now().Add(time.Hour))
	e.api("GET", "/api/v1/tenants/acme/events", nil, http.StatusOK, &evs)
	if len(evs.Events) != 0 {
		t.Errorf("%d events left after their retention", len(evs.Events))
	}
	e.api("GET", "/api/v1/messages/"+id, nil, http.StatusNotFound, nil)
	if n := deliveries(); n != 0 {
		t.Errorf("%d webhook deliveries left after their retention", n)
	}
	var sup struct{ Suppressions []any }
	e.api("GET", "/api/v1/tenants/acme/suppressions", nil, http.StatusOK, &sup)
	if len(sup.Suppressions) != 1 {
		t.Errorf("suppressions after retention: %d, want 1", len(sup.Suppressions))
	}
}
