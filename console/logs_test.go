package console_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// audited appends n audit records of tenantID, as the admin API does.
func (e *env) audited(tenantID, actor string, n int) {
	e.t.Helper()
	for i := range n {
		r := &audit.Record{Time: e.clock.Now().Add(-time.Hour), Actor: actor, Tenant: tenantID,
			Action: "DELETE /api/v1/tenants/:tenant/suppressions/:address", Status: 204, RemoteIP: "192.0.2.1",
			Target: fmt.Sprintf("/api/v1/tenants/%s/suppressions/user%d@example.net", tenantID, i)}
		if err := e.audit.Append(context.Background(), r); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestAuditLogScoped: a read-only tenant user reads its tenant's audit
// log, a page of 50 then the next, and nothing of another tenant's;
// another tenant's log answers as a missing tenant's, and the log of
// every tenant is an operator's, who sees both.
func TestAuditLogScoped(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.audited("acme", "api_key:k-acme", 60)
	e.audited("globex", "api_key:k-globex", 3)
	c := e.signedIn("pat")

	st, first, _ := e.get(c, "/console/tenants/acme/audit")
	if st != 200 || !strings.Contains(first, "user0@example.net") || !strings.Contains(first, "user49@example.net") ||
		strings.Contains(first, "user50@example.net") || strings.Contains(first, "globex") {
		t.Fatalf("acme's audit log, first page: %d\n%s", st, first)
	}
	next := nextLink.FindStringSubmatch(first)
	if next == nil {
		t.Fatalf("no next link on a full page:\n%s", first)
	}
	st, second, _ := e.get(c, "/console/tenants/acme/audit"+next[1])
	if st != 200 || !strings.Contains(second, "user50@example.net") || !strings.Contains(second, "user59@example.net") ||
		strings.Contains(second, "user49@example.net") || nextLink.MatchString(second) || strings.Contains(second, "globex") {
		t.Errorf("acme's audit log, second page: %d\n%s", st, second)
	}

	stOther, other, _ := e.get(c, "/console/tenants/globex/audit")
	stNone, none, _ := e.get(c, "/console/tenants/nothing/audit")
	if stOther != 404 || stNone != 404 || other != none {
		t.Errorf("another tenant's audit log: %d, a missing tenant's: %d; want the same 404\n%s\n---\n%s", stOther, stNone, other, none)
	}
	if st, body, _ := e.get(c, "/console/audit"); st != 403 || strings.Contains(body, "k-globex") {
		t.Errorf("every tenant's audit log for a tenant's user: %d\n%s", st, body)
	}
	if st, _, _ := e.get(c, "/console/tenants/acme/audit?after=x"); st != 400 {
		t.Errorf("a bad after: %d", st)
	}

	ops := e.signedIn("ops")
	if st, all, _ := e.get(ops, "/console/audit?after=55"); st != 200 || !strings.Contains(all, "k-globex") || !strings.Contains(all, "user56@example.net") {
		t.Errorf("every tenant's audit log for an operator: %d\n%s", st, all)
	}
}

// TestEventsScoped: a tenant's user pages through its tenant's events,
// oldest first, and another tenant's events page answers as a missing
// tenant's.
func TestEventsScoped(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	log := boltdb.Events(e.db)
	for i := range 55 {
		ev := &events.Event{ID: fmt.Sprintf("acme-%d", i), Type: events.Type("message.delivered"), Time: e.clock.Now().Add(-time.Hour),
			Data: events.Data{Tenant: "acme", MessageID: fmt.Sprintf("m%d", i), Recipient: fmt.Sprintf("r%d@example.net", i),
				List: "transactional", Reply: "250 2.0.0 Ok"}}
		if err := log.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Record(context.Background(), &events.Event{ID: "globex-0", Type: events.Type("message.bounced"), Time: e.clock.Now(),
		Data: events.Data{Tenant: "globex", MessageID: "mg", Recipient: "secret.patient@example.net"}}); err != nil {
		t.Fatal(err)
	}
	c := e.signedIn("pat")

	st, first, _ := e.get(c, "/console/tenants/acme/events")
	if st != 200 || !strings.Contains(first, "r0@example.net") || !strings.Contains(first, "r49@example.net") ||
		strings.Contains(first, "r50@example.net") || !strings.Contains(first, "250 2.0.0 Ok") || strings.Contains(first, "secret.patient") {
		t.Fatalf("acme's events, first page: %d\n%s", st, first)
	}
	next := nextLink.FindStringSubmatch(first)
	if next == nil {
		t.Fatalf("no next link on a full page:\n%s", first)
	}
	st, second, _ := e.get(c, "/console/tenants/acme/events"+next[1])
	if st != 200 || !strings.Contains(second, "r54@example.net") || strings.Contains(second, "r49@example.net") ||
		nextLink.MatchString(second) || strings.Contains(second, "secret.patient") {
		t.Errorf("acme's events, second page: %d\n%s", st, second)
	}
	stOther, other, _ := e.get(c, "/console/tenants/globex/events")
	stNone, none, _ := e.get(c, "/console/tenants/nothing/events")
	if stOther != 404 || stNone != 404 || other != none || strings.Contains(other, "secret.patient") {
		t.Errorf("another tenant's events: %d, a missing tenant's: %d; want the same 404\n%s\n---\n%s", stOther, stNone, other, none)
	}
}

// TestBrowserAuditAndEvents: a read-only tenant user reaches the Events
// and Audit log pages from the menu and reads them; both pass axe.
func TestBrowserAuditAndEvents(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	garcia(e)
	e.audited("acme", "console:ana", 3)
	b := newBrowser(t, true)
	b.signIn(e, "pat")

	b.run(chromedp.Click(chromedp.CSS(`nav a[href="/console/tenants/acme/events"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.events")))
	if rows := b.text("table.events tbody"); !strings.Contains(rows, "message.bounced") || !strings.Contains(rows, "550 5.1.1 User unknown") {
		t.Errorf("acme's events:\n%s", rows)
	}
	b.accessible("events")
	b.shot("events")

	b.run(chromedp.Click(chromedp.CSS(`nav a[href="/console/tenants/acme/audit"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.audit")))
	if rows := b.text("table.audit tbody"); !strings.Contains(rows, "console:ana") || !strings.Contains(rows, "user2@example.net") {
		t.Errorf("acme's audit log:\n%s", rows)
	}
	b.accessible("audit")
	b.shot("audit")
}
