package console_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/internal/tenant"
)

// message accepts a message of tenantID to rcpts through the queue's
// store, as smtpd does, an hour before the console's time.
func (e *env) message(tenantID, id string, rcpts ...string) *queue.Message {
	e.t.Helper()
	m := &queue.Message{ID: id, Tenant: tenantID, List: "transactional", From: "app@" + tenantID + ".example",
		HeaderFrom: "Reminders <app@" + tenantID + ".example>", Size: 1234, ReceivedAt: e.clock.Now().Add(-time.Hour),
		Body: []byte("Subject: hi\r\n\r\nhi\r\n")}
	for i, r := range rcpts {
		m.Recipients = append(m.Recipients, queue.Recipient{Index: i, Address: r})
	}
	if err := e.queue.Add(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// attempt records an outcome of recipient i of m, as the delivery does.
func (e *env) attempt(m *queue.Message, i int, due time.Time, out queue.Outcome) {
	e.t.Helper()
	addr := m.Recipients[i].Address
	job := queue.Job{MessageID: m.ID, Index: i, Domain: addr[strings.IndexByte(addr, '@')+1:], Due: due}
	if _, err := e.queue.Record(context.Background(), job, out); err != nil {
		e.t.Fatal(err)
	}
}

// garcia is acme's message to two recipients: one delivered, one
// deferred then bounced hard.
func garcia(e *env) *queue.Message {
	m := e.message("acme", "20260101T000000-acme-0001", "maria.garcia@example.net", "nobody@example.org")
	at := m.ReceivedAt.Add(time.Minute)
	e.attempt(m, 0, m.ReceivedAt, queue.Outcome{State: queue.Delivered, Reply: "250 2.0.0 Ok: queued as 4F2", At: at})
	next := at.Add(10 * time.Minute)
	e.attempt(m, 1, m.ReceivedAt, queue.Outcome{State: queue.Deferred, Reply: "451 4.7.1 Try again later", NextAttempt: next, At: at})
	e.attempt(m, 1, next, queue.Outcome{State: queue.Bounced, Reply: "550 5.1.1 User unknown", At: next,
		Bounce: queue.Bounce{Reason: report.UserUnknown, Verdict: report.Hard, Status: "5.1.1", Remote: true}})
	return m
}

// TestMessagesOtherTenant: a tenant user who types another tenant's
// message id into the search gets exactly the answer of an id that does
// not exist (404, same page), and nothing of the message.
func TestMessagesOtherTenant(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadWrite})
	e.message("globex", "m-globex", "secret.patient@example.net")
	e.message("acme", "m-acme", "someone@example.net")
	c := e.client()
	e.password(c, "pat", e.secrets["pat"].Password)
	_, _, tok := e.get(c, "/console/sign-in/code")
	e.post(c, "/console/sign-in/code", map[string][]string{"csrf": {tok}, "code": {e.code("pat")}})

	if st, body, _ := e.get(c, "/console/tenants/acme/messages?q=m-acme"); st != 200 || !strings.Contains(body, "someone@example.net") {
		t.Fatalf("own message: %d\n%s", st, body)
	}
	stOther, other, _ := e.get(c, "/console/tenants/acme/messages?q=m-globex")
	stNone, none, _ := e.get(c, "/console/tenants/acme/messages?q=m-nothing")
	if stOther != 404 || stNone != 404 {
		t.Errorf("another tenant's message: %d, a missing one: %d; want 404 both", stOther, stNone)
	}
	if strings.ReplaceAll(other, "m-globex", "ID") != strings.ReplaceAll(none, "m-nothing", "ID") {
		t.Errorf("another tenant's message answers differently from a missing one:\n%s\n---\n%s", other, none)
	}
	if strings.Contains(other, "secret.patient") {
		t.Errorf("another tenant's recipient is on the page:\n%s", other)
	}
	// Nor does the search by address find it.
	if _, body, _ := e.get(c, "/console/tenants/acme/messages?q=secret.patient@example.net"); strings.Contains(body, "m-globex") {
		t.Errorf("the search by address found another tenant's message:\n%s", body)
	}
	// And globex's own page is another tenant's: 404.
	if st, _, _ := e.get(c, "/console/tenants/globex/messages?q=m-globex"); st != 404 {
		t.Errorf("globex's messages page for acme's user: %d", st)
	}
}

// TestBrowserMessages: a tenant's user finds a message by id and reads
// each recipient's timeline (accepted, the deferral with its reply, the
// delivery, the hard bounce with its reason), then finds the message by
// the recipient's address in another spelling. Every page passes axe.
func TestBrowserMessages(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	m := garcia(e)
	e.message("acme", "20260101T000100-acme-0002", "someone.else@example.net")
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	b.run(chromedp.Click(chromedp.CSS(`nav a[href="/console/tenants/acme/messages"]`)),
		chromedp.WaitVisible(chromedp.CSS("#q")))
	b.accessible("messages")
	b.run(chromedp.SendKeys(chromedp.CSS("#q"), m.ID),
		chromedp.Click(chromedp.CSS("form.search button")),
		chromedp.WaitVisible(chromedp.CSS("section.timeline")))
	_, main := b.page()
	for _, want := range []string{
		"maria.garcia@example.net: delivered", "message.accepted", "message.delivered", "250 2.0.0 Ok: queued as 4F2",
		"nobody@example.org: bounced", "message.deferred", "451 4.7.1 Try again later",
		"message.bounced", "550 5.1.1 User unknown", "hard bounce", "(user-unknown)",
	} {
		if !strings.Contains(main, want) {
			t.Errorf("the timelines lack %q:\n%s", want, main)
		}
	}
	b.accessible("message")
	b.shot("messages")

	b.run(chromedp.Click(chromedp.CSS(`nav a[href="/console/tenants/acme/messages"]`)),
		chromedp.WaitNotPresent(chromedp.CSS("section.timeline")),
		chromedp.SendKeys(chromedp.CSS("#q"), "Maria.Garcia@EXAMPLE.net"),
		chromedp.Click(chromedp.CSS("form.search button")),
		chromedp.WaitVisible(chromedp.CSS("table.found")))
	found := b.text("table.found tbody")
	if !strings.Contains(found, m.ID) || !strings.Contains(found, "message.delivered") || strings.Contains(found, "acme-0002") {
		t.Errorf("messages to maria.garcia@example.net:\n%s", found)
	}
	b.accessible("messages by recipient")
	b.run(chromedp.Click(chromedp.CSS("table.found a")), chromedp.WaitVisible(chromedp.CSS("section.timeline")))
	if _, main := b.page(); !strings.Contains(main, "nobody@example.org: bounced") {
		t.Errorf("the link to the message:\n%s", main)
	}
}
