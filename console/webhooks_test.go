package console_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/webhooks"
)

// receiver is a real HTTP listener that takes webhooks and keeps each
// one's webhook-id, verified with secret once it is known.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids []string
	bad []string // deliveries whose signature did not verify
	// secret verifies the signatures ("" before the endpoint exists).
	secret string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		id := r.Header.Get("webhook-id")
		if err := webhooks.Verify(rc.secret, r.Header, body, time.Hour, time.Now()); err != nil {
			rc.bad = append(rc.bad, id+": "+err.Error())
		}
		rc.ids = append(rc.ids, id)
		io.WriteString(w, "thanks from the receiver")
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// got returns how many deliveries of id arrived.
func (rc *receiver) got(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, x := range rc.ids {
		if x == id {
			n++
		}
	}
	return n
}

// waitFor waits until cond holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not a sleep to synchronise
	}
}

// dispatch runs a webhook dispatcher over the env's stores, told of the
// console's changes, until the test ends.
func (e *env) dispatch() {
	e.t.Helper()
	d := webhooks.NewDispatcher(webhooks.Options{Store: e.hooks.Store, Events: e.hooks.Events, Sealer: e.hooks.Sealer,
		AllowPrivate: true, Now: e.clock.Now})
	e.hooks.Changed = d.Changed
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// event records one event of tenant and returns it with its seq.
func (e *env) event(tenantID string, ty events.Type, id string, at time.Time) events.Event {
	e.t.Helper()
	ev := &events.Event{ID: id, Type: ty, Time: at, Data: events.Data{Tenant: tenantID, MessageID: "m-" + id, Recipient: "r@example.net"}}
	log := e.hooks.Events.(*events.Log)
	if err := log.Record(context.Background(), ev); err != nil {
		e.t.Fatal(err)
	}
	seq, err := log.Last(context.Background()) // the test's only writer
	if err != nil {
		e.t.Fatal(err)
	}
	ev.Seq = seq
	return *ev
}

// attempts is how many attempts the delivery of seq to endpoint has
// recorded (0 when it has none yet).
func (e *env) attempts(tenantID, endpoint string, seq uint64) int {
	e.t.Helper()
	d, err := e.hooks.Store.Delivery(context.Background(), tenantID, endpoint, seq)
	if err != nil {
		return 0
	}
	return len(d.Attempts)
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

var secretValue = regexp.MustCompile(`value="(whsec_[^"]+)"`)

// TestWebhooksScoped: another tenant's webhook pages, and its endpoint's
// id under one's own tenant, answer as missing ones; a tenant's user's
// POSTs to another tenant change nothing; a read-only user sees no form
// and is refused the actions.
func TestWebhooksScoped(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.user(consoleusers.NewUser{Username: "rw", Tenant: "acme", Access: tenant.ReadWrite})
	ctx := context.Background()
	theirs, _, err := e.hooks.Create(ctx, "globex", "", webhooks.Input{URL: "https://globex.example/hooks"})
	if err != nil {
		t.Fatal(err)
	}
	mine, _, err := e.hooks.Create(ctx, "acme", "", webhooks.Input{URL: "https://acme.example/hooks"})
	if err != nil {
		t.Fatal(err)
	}
	rw := e.signedIn("rw")

	_, tenantMissing, _ := e.get(rw, "/console/tenants/nosuch/webhooks")
	for _, path := range []string{"/console/tenants/globex/webhooks", "/console/tenants/globex/webhooks/" + theirs.ID} {
		if st, body, _ := e.get(rw, path); st != 404 || body != tenantMissing {
			t.Errorf("%s for acme's user: %d, want the missing tenant's 404\n%s", path, st, body)
		}
	}
	_, epMissing, _ := e.get(rw, "/console/tenants/acme/webhooks/nosuch")
	if st, body, _ := e.get(rw, "/console/tenants/acme/webhooks/"+theirs.ID); st != 404 || body != epMissing || strings.Contains(body, "globex") {
		t.Errorf("globex's endpoint under acme: %d, want a missing endpoint's 404\n%s", st, body)
	}

	_, _, tok := e.get(rw, "/console/tenants/acme/webhooks")
	for path, form := range map[string]url.Values{
		"/console/tenants/globex/webhooks":                          {"csrf": {tok}, "url": {"https://evil.example/"}},
		"/console/tenants/globex/webhooks/" + theirs.ID + "/delete": {"csrf": {tok}, "confirm": {theirs.ID}},
		"/console/tenants/globex/webhooks/" + theirs.ID + "/replay": {"csrf": {tok}, "since": {"2020-01-01T00:00"}},
		"/console/tenants/acme/webhooks/" + theirs.ID + "/delete":   {"csrf": {tok}, "confirm": {theirs.ID}},
		"/console/tenants/globex/webhooks/" + theirs.ID + "/resend": {"csrf": {tok}, "event": {"1"}},
	} {
		if st, _ := e.post(rw, path, form); st != 404 {
			t.Errorf("POST %s as acme's user: %d, want 404", path, st)
		}
	}
	eps, err := e.hooks.Store.Endpoints(ctx, "globex")
	if err != nil || len(eps) != 1 || eps[0].URL != theirs.URL {
		t.Errorf("globex's endpoints after acme's user's posts: %+v %v", eps, err)
	}

	pat := e.signedIn("pat")
	st, page, tok := e.get(pat, "/console/tenants/acme/webhooks/"+mine.ID)
	if st != 200 || !strings.Contains(page, mine.URL) || strings.Contains(page, "Resend") || strings.Contains(page, "Replay") || strings.Contains(page, "Remove") {
		t.Errorf("a read-only user's endpoint page: %d\n%s", st, page)
	}
	if _, list, _ := e.get(pat, "/console/tenants/acme/webhooks"); strings.Contains(list, "Add the endpoint") || !strings.Contains(list, mine.URL) {
		t.Errorf("a read-only user's webhooks page:\n%s", list)
	}
	for path, form := range map[string]url.Values{
		"/console/tenants/acme/webhooks":                        {"csrf": {tok}, "url": {"https://new.example/"}},
		"/console/tenants/acme/webhooks/" + mine.ID + "/delete": {"csrf": {tok}, "confirm": {mine.ID}},
		"/console/tenants/acme/webhooks/" + mine.ID + "/replay": {"csrf": {tok}, "since": {"2020-01-01T00:00"}},
		"/console/tenants/acme/webhooks/" + mine.ID + "/resend": {"csrf": {tok}, "event": {"1"}},
	} {
		if st, _ := e.post(pat, path, form); st != 403 {
			t.Errorf("POST %s as a read-only user: %d, want 403", path, st)
		}
	}
	if eps, _ := e.hooks.Store.Endpoints(ctx, "acme"); len(eps) != 1 {
		t.Errorf("acme's endpoints after a read-only user's posts: %+v", eps)
	}
	if recs, _ := e.audit.Records(ctx, "", 0, 10); len(recs) != 0 {
		t.Errorf("audit records of refused posts: %+v", recs)
	}
}

// TestWebhookAddResendReplayRemove: a read-write user adds an endpoint
// and reads its secret once; a real receiver gets the tenant's events
// signed with that secret; a resend from the page sends one event again
// with its webhook-id, a replay every event of a span, and the page shows
// the receiver's replies; the endpoint is removed only once its id is
// typed. Each change is audited under the console user as its API route.
func TestWebhookAddResendReplayRemove(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "rw", Tenant: "acme", Access: tenant.ReadWrite})
	e.dispatch()
	rc := newReceiver(t)
	c := e.signedIn("rw")
	ctx := context.Background()

	_, _, tok := e.get(c, "/console/tenants/acme/webhooks")
	if st, body := e.post(c, "/console/tenants/acme/webhooks", url.Values{"csrf": {tok}, "url": {"ftp://nowhere"}}); st != 422 || !strings.Contains(body, "scheme") {
		t.Errorf("an ftp URL: %d\n%s", st, body)
	}
	st, body := e.post(c, "/console/tenants/acme/webhooks", url.Values{"csrf": {tok}, "url": {rc.srv.URL + "/hooks"},
		"types": {"message.delivered", "message.bounced"}})
	m := secretValue.FindStringSubmatch(body)
	if st != 201 || m == nil {
		t.Fatalf("adding an endpoint: %d\n%s", st, body)
	}
	rc.mu.Lock()
	rc.secret = html.UnescapeString(m[1]) // as the browser shows it
	rc.mu.Unlock()
	if _, again, _ := e.get(c, "/console/tenants/acme/webhooks"); strings.Contains(again, m[1]) || !strings.Contains(again, rc.srv.URL+"/hooks") {
		t.Errorf("the secret is shown again, or the endpoint is not listed:\n%s", again)
	}
	eps, err := e.hooks.Store.Endpoints(ctx, "acme")
	if err != nil || len(eps) != 1 {
		t.Fatalf("acme's endpoints: %+v %v", eps, err)
	}
	ep := eps[0]
	epPath := "/console/tenants/acme/webhooks/" + ep.ID

	t0 := e.clock.Now()
	first := e.event("acme", events.MessageDelivered, "evt_a", t0)
	e.event("acme", events.MessageAccepted, "evt_b", t0) // not a type it takes
	waitFor(t, "the first delivery", func() bool { return e.attempts("acme", ep.ID, first.Seq) == 1 })

	_, page, tok := e.get(c, epPath)
	for _, want := range []string{"evt_a", "delivered", "HTTP 200", "thanks from the receiver"} {
		if !strings.Contains(page, want) {
			t.Errorf("the endpoint's page lacks %q:\n%s", want, page)
		}
	}
	if st, _ := e.post(c, epPath+"/resend", url.Values{"csrf": {tok}, "event": {"99999"}}); st != 404 {
		t.Errorf("resending an event that does not exist: %d", st)
	}
	if st, _ := e.post(c, epPath+"/resend", url.Values{"csrf": {tok}, "event": {u64(first.Seq)}}); st != http.StatusSeeOther {
		t.Fatalf("resend: %d", st)
	}
	waitFor(t, "the resent delivery", func() bool { return rc.got("evt_a") == 2 && e.attempts("acme", ep.ID, first.Seq) == 2 })

	third := e.event("acme", events.MessageBounced, "evt_c", t0.Add(time.Minute))
	waitFor(t, "the second event", func() bool { return e.attempts("acme", ep.ID, third.Seq) == 1 })
	since := t0.Add(-time.Minute).UTC().Format("2006-01-02T15:04")
	if st, body := e.post(c, epPath+"/replay", url.Values{"csrf": {tok}, "since": {"yesterday"}}); st != 400 || !strings.Contains(body, "Nothing was replayed") {
		t.Errorf("a replay from a bad time: %d\n%s", st, body)
	}
	until := t0.Add(2 * time.Minute).UTC().Format(time.RFC3339)
	st, body = e.post(c, epPath+"/replay", url.Values{"csrf": {tok}, "since": {since}, "until": {until}})
	if st != 200 || !strings.Contains(body, "2 events scheduled") {
		t.Errorf("replay: %d\n%s", st, body)
	}
	waitFor(t, "the replayed deliveries", func() bool { return rc.got("evt_a") == 3 && rc.got("evt_c") == 2 })
	if n := rc.got("evt_b"); n != 0 {
		t.Errorf("an event type the endpoint does not take was sent %d times", n)
	}

	if st, _ := e.post(c, epPath+"/delete", url.Values{"csrf": {tok}, "confirm": {"not-it"}}); st != 400 {
		t.Errorf("removing without typing the id: %d", st)
	}
	if _, err := e.hooks.Store.Endpoint(ctx, "acme", ep.ID); err != nil {
		t.Fatalf("the endpoint went without its id typed: %v", err)
	}
	if st, _ := e.post(c, epPath+"/delete", url.Values{"csrf": {tok}, "confirm": {ep.ID}}); st != http.StatusSeeOther {
		t.Errorf("remove: %d", st)
	}
	if _, err := e.hooks.Store.Endpoint(ctx, "acme", ep.ID); err == nil {
		t.Errorf("the endpoint is still there")
	}
	rc.mu.Lock()
	if len(rc.bad) > 0 {
		t.Errorf("deliveries the shown secret does not verify: %v", rc.bad)
	}
	rc.mu.Unlock()

	recs, err := e.audit.Records(ctx, "acme", 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Actor != "console:rw" {
			t.Errorf("audit record of another actor: %+v", r)
		}
		got = append(got, r.Action+" "+r.Target+" "+u64(uint64(r.Status)))
	}
	want := []string{
		"POST /api/v1/tenants/:tenant/webhooks /api/v1/tenants/acme/webhooks 201",
		"POST /api/v1/tenants/:tenant/webhooks/:endpoint/deliveries/:event/resend /api/v1/tenants/acme/webhooks/" + ep.ID + "/deliveries/" + u64(first.Seq) + "/resend 202",
		"POST /api/v1/tenants/:tenant/webhooks/:endpoint/replay /api/v1/tenants/acme/webhooks/" + ep.ID + "/replay 202",
		"POST /api/v1/tenants/:tenant/webhooks/:endpoint/replay /api/v1/tenants/acme/webhooks/" + ep.ID + "/replay 202",
		"DELETE /api/v1/tenants/:tenant/webhooks/:endpoint /api/v1/tenants/acme/webhooks/" + ep.ID + " 204",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBrowserWebhooksAndPrivacy: an operator adds an endpoint from a
// tenant's page and reads its secret, sees a working and a failing
// endpoint's health and deliveries with the receivers' answers, resends
// a delivery; then finds an address on the Privacy page and erases it
// after typing it again. Every page passes axe.
func TestBrowserWebhooksAndPrivacy(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.dispatch()
	rc := newReceiver(t)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy, try later", http.StatusServiceUnavailable)
	}))
	t.Cleanup(busy.Close)
	ctx := context.Background()
	failing, _, err := e.hooks.Create(ctx, "acme", "crm", webhooks.Input{URL: busy.URL + "/crm", Description: "The CRM's import"})
	if err != nil {
		t.Fatal(err)
	}
	garciaEverywhere(e)

	b := newBrowser(t, true)
	b.signIn(e, "ops")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme"),
		chromedp.Click(chromedp.CSS(`ul.actions a[href="/console/tenants/acme/webhooks"]`)),
		chromedp.WaitVisible(chromedp.CSS("#url")))
	b.accessible("webhooks")
	b.run(chromedp.SendKeys(chromedp.CSS("#url"), rc.srv.URL+"/hooks"),
		chromedp.SendKeys(chromedp.CSS("#description"), "The app's customer records"),
		chromedp.Click(chromedp.CSS("form.card button")),
		chromedp.WaitVisible(chromedp.CSS("section.secret")))
	secret := get(b, chromedp.Value(chromedp.CSS("#secret-value")))
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("the new endpoint's secret: %q", secret)
	}
	rc.mu.Lock()
	rc.secret = secret
	rc.mu.Unlock()
	b.accessible("webhooks with a secret")

	eps, err := e.hooks.Store.Endpoints(ctx, "acme")
	if err != nil || len(eps) != 2 {
		t.Fatalf("acme's endpoints: %+v %v", eps, err)
	}
	ok := eps[0]
	if ok.ID == failing.ID {
		ok = eps[1]
	}
	ev := e.event("acme", events.MessageDelivered, "evt_browser", e.clock.Now())
	waitFor(t, "both endpoints' first attempts", func() bool {
		return e.attempts("acme", ok.ID, ev.Seq) == 1 && e.attempts("acme", failing.ID, ev.Seq) >= 1
	})
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/webhooks"), chromedp.WaitVisible(chromedp.CSS("table.endpoints")))
	rows := b.text("table.endpoints tbody")
	for _, want := range []string{rc.srv.URL + "/hooks", "busy, try later", "HTTP 503", "active", "every event"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the endpoints lack %q:\n%s", want, rows)
		}
	}
	b.accessible("webhooks with endpoints")
	b.shot("webhooks")

	b.run(chromedp.Click(chromedp.CSS(`table.endpoints a[href="/console/tenants/acme/webhooks/`+ok.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.deliveries")))
	if d := b.text("table.deliveries tbody"); !strings.Contains(d, "evt_browser") || !strings.Contains(d, "thanks from the receiver") {
		t.Errorf("the deliveries:\n%s", d)
	}
	b.accessible("webhook endpoint")
	b.run(chromedp.Click(chromedp.CSS("table.deliveries button")), chromedp.WaitVisible(chromedp.CSS("p.notice")))
	waitFor(t, "the resent delivery", func() bool { return rc.got("evt_browser") == 2 })
	b.accessible("webhook endpoint after a resend")
	b.shot("webhook")

	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme"),
		chromedp.Click(chromedp.CSS(`ul.actions a[href="/console/tenants/acme/privacy"]`)),
		chromedp.WaitVisible(chromedp.CSS("#address")))
	b.accessible("privacy")
	b.run(chromedp.SendKeys(chromedp.CSS("#address"), "Maria.Garcia@Example.NET"),
		chromedp.Click(chromedp.CSS("form.search button")),
		chromedp.WaitVisible(chromedp.CSS("section[aria-labelledby=held]")))
	if held := b.text("section[aria-labelledby=held]"); !strings.Contains(held, "20260101T000000-acme-0001") || strings.Contains(held, "globex") {
		t.Errorf("what acme holds:\n%s", held)
	}
	b.accessible("privacy with an address")
	b.run(chromedp.SendKeys(chromedp.CSS("#confirm"), "maria.garcia@example.net"),
		chromedp.Click(chromedp.CSS("section[aria-labelledby=erase] button")),
		chromedp.WaitVisible(chromedp.CSS("section[aria-labelledby=erased]")))
	if erased := b.text("section[aria-labelledby=erased]"); !strings.Contains(erased, "maria.garcia@example.net") {
		t.Errorf("what was erased:\n%s", erased)
	}
	b.accessible("privacy after an erasure")
	b.shot("privacy")
	rc.mu.Lock()
	if len(rc.bad) > 0 {
		t.Errorf("deliveries the shown secret does not verify: %v", rc.bad)
	}
	rc.mu.Unlock()
}
