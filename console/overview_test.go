package console_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// chartOf is the accessible name of a chart: its title, which lists
// every count.
var chartOf = regexp.MustCompile(`<title id="c-[^"]*">([^<]*)</title>`)

// TestOverviewTotal: an operator's overview has every tenant's counts
// together before each tenant's (the issue: "per tenant and in total");
// a tenant's user sees their tenant's alone, no total of others.
func TestOverviewTotal(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.mail("acme", events.MessageDelivered, 2)
	e.mail("globex", events.MessageDelivered, 3)
	e.mail("globex", events.MessageBounced, 1)

	st, body, _ := e.get(e.signedIn("ops"), "/console/overview")
	charts := chartOf.FindAllStringSubmatch(body, -1)
	if st != http.StatusOK || len(charts) != 3 {
		t.Fatalf("operator's overview: %d, %d charts, want 3 (total, acme, globex)", st, len(charts))
	}
	if c := charts[0][1]; !strings.HasPrefix(c, "Events of All tenants") ||
		!strings.Contains(c, "message.delivered 5") || !strings.Contains(c, "message.bounced 1") {
		t.Errorf("the first chart is %q, want every tenant's: 5 delivered, 1 bounced", c)
	}

	st, body, _ = e.get(e.signedIn("pat"), "/console/overview")
	charts = chartOf.FindAllStringSubmatch(body, -1)
	if st != http.StatusOK || len(charts) != 1 || !strings.Contains(charts[0][1], "message.delivered 2") || strings.Contains(body, "All tenants") {
		t.Errorf("a tenant user's overview: %d, charts %q", st, charts)
	}
}
