package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/browsertest"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// axeEnv names axe.min.js when it is not at axeDefault, where .ci/run
// installs it from the npm registry.
const (
	axeEnv     = "HEED_AXE_JS"
	axeDefault = "testdata/node_modules/axe-core/axe.min.js"
)

// browser is a Chromium session with helpers that fail the test.
type browser struct {
	t   *testing.T
	ctx context.Context
	axe string // axe.min.js, "" when the test does not check
}

func newBrowser(t *testing.T, checkAxe bool) *browser {
	t.Helper()
	b := &browser{t: t}
	if checkAxe {
		path := os.Getenv(axeEnv)
		if path == "" {
			path = axeDefault
		}
		src, err := os.ReadFile(path)
		browsertest.Need(t, "axe-core ("+path+"; npm install --prefix console/testdata axe-core@4.10.3, as .ci/run does)", err == nil)
		b.axe = string(src)
	}
	b.ctx = browsertest.Start(t, 1100, 800, 90*time.Second)
	return b
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

// get runs one action that returns a value.
func get[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatal(err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return get(b, chromedp.Text(chromedp.CSS(sel)))
}

// page returns the page's title and the text of its main landmark.
func (b *browser) page() (title, main string) {
	b.t.Helper()
	return get(b, chromedp.Title()), b.text("main")
}

// accessible runs axe-core on the page and fails the test with every
// violation's rule and nodes.
func (b *browser) accessible(name string) {
	b.t.Helper()
	if b.axe == "" {
		return
	}
	b.run(chromedp.Evaluate[chromedp.Void](b.axe))
	out := get(b, chromedp.Evaluate[string](`axe.run(document).then(r => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
	var vs []struct {
		ID    string
		Help  string
		Nodes []struct{ Target []any }
	}
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		b.t.Fatalf("axe on %s: %v", name, err)
	}
	for _, v := range vs {
		var nodes []string
		for _, n := range v.Nodes {
			nodes = append(nodes, fmt.Sprint(n.Target...))
		}
		b.t.Errorf("axe on %s: %s (%s): %s", name, v.ID, v.Help, strings.Join(nodes, ", "))
	}
}

// shot writes a screenshot to $HEED_SCREENSHOTS/console-name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	dir := os.Getenv("HEED_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := get(b, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// signIn goes through the password and code pages as a person does,
// checking each with axe.
func (b *browser) signIn(e *env, username string) {
	b.t.Helper()
	b.run(chromedp.Navigate(e.srv.URL + "/console/"))
	if title, _ := b.page(); !strings.HasPrefix(title, "Sign in") {
		b.t.Fatalf("the console's first page is %q, want the sign-in", title)
	}
	b.accessible("sign-in")
	b.shot("sign-in")
	b.run(chromedp.SendKeys(chromedp.CSS("#username"), username),
		chromedp.SendKeys(chromedp.CSS("#password"), e.secrets[username].Password),
		chromedp.Click(chromedp.CSS("form.card button")),
		chromedp.WaitVisible(chromedp.CSS("#code")))
	b.accessible("code")
	b.shot("code")
	b.run(chromedp.SendKeys(chromedp.CSS("#code"), e.code(username)),
		chromedp.Click(chromedp.CSS("form.card button")),
		chromedp.WaitVisible(chromedp.CSS("section[aria-labelledby=day]")))
}

func abs(n int) int { return max(n, -n) }

// TestBrowserLiftBounce: an operator signs in with password and TOTP,
// finds an address, sees its bounce with the evidence, removes it, and
// the audit log names the console user. Every page passes axe-core.
func TestBrowserLiftBounce(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	// A day of mail, oldest first as the log is written, that varies by
	// the hour (for the chart and its screenshot): acme accepts 179,
	// delivers 155, defers 12, bounces 3; globex accepts and delivers 24.
	now := e.clock.Now()
	for h := 23; h >= 0; h-- {
		at := now.Add(-time.Duration(h) * time.Hour)
		n := 4 + (h*7)%5 + max(0, 6-abs(h-9))
		e.mailAt("acme", events.MessageAccepted, at, n)
		e.mailAt("acme", events.MessageDelivered, at, n-1)
		e.mailAt("globex", events.MessageAccepted, at, 1)
		e.mailAt("globex", events.MessageDelivered, at, 1)
		if h%4 == 1 {
			e.mailAt("acme", events.MessageDeferred, at, 1+h%3)
		}
		if h == 5 || h == 17 {
			e.mailAt("acme", events.MessageBounced, at, 1+h/17)
		}
	}
	e.bounce("acme", "pat@example.net", "msg-0001")
	b := newBrowser(t, true)
	b.signIn(e, "ops")
	_, main := b.page()
	for _, want := range []string{"Queue depth", "3", "Acme Dental", "Globex Clinic", "message.bounced\npeak 2 per hour\n3"} {
		if !strings.Contains(main, want) {
			t.Errorf("the overview lacks %q:\n%s", want, main)
		}
	}
	b.accessible("overview")
	b.shot("overview")
	// The table under the chart, for whoever can't see the bars.
	b.run(chromedp.Click(chromedp.CSS(`article[aria-labelledby="t-acme"] summary`)))
	if got := b.text(`article[aria-labelledby="t-acme"] tfoot`); !strings.Contains(got, "Total\t179\t155\t12\t3\t0\t0") {
		t.Errorf("acme's totals: %q", got)
	}
	b.accessible("overview with a table open")
	b.run(chromedp.Click(chromedp.CSS(`a[href="/console/overview?span=7d"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/overview?span=7d"][aria-current=page]`)))
	b.accessible("overview of a week")

	b.run(chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/suppressions"]`)),
		chromedp.WaitVisible(chromedp.CSS("#address")),
		chromedp.SendKeys(chromedp.CSS("#address"), "Pat@Example.NET"),
		chromedp.Click(chromedp.CSS("form.search button")),
		chromedp.WaitVisible(chromedp.CSS("table.entries")))
	row := b.text("table.entries tbody tr")
	for _, want := range []string{"bounce", "every list", "dsn", "msg-0001"} {
		if !strings.Contains(row, want) {
			t.Errorf("the entry lacks %q: %s", want, row)
		}
	}
	b.accessible("suppressions")
	b.shot("suppressions")

	b.run(chromedp.Click(chromedp.CSS("table.entries button")),
		chromedp.WaitVisible(chromedp.CSS("p.notice")))
	if n := b.text("p.notice"); !strings.Contains(n, "removed") {
		t.Errorf("after Remove: %q", n)
	}
	b.accessible("suppressions after removal")
	es, err := e.sup.Lookup(context.Background(), "acme", "pat@example.net")
	if err != nil || len(es) != 0 {
		t.Fatalf("the bounce is still there: %v %v", es, err)
	}
	recs, err := e.audit.Records(context.Background(), "acme", 0, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records: %+v %v", recs, err)
	}
	r := recs[0]
	if r.Actor != "console:ops" || r.Action != "DELETE /api/v1/tenants/:tenant/suppressions/:address" ||
		r.Target != "/api/v1/tenants/acme/suppressions/pat@example.net" || r.Status != http.StatusNoContent {
		t.Errorf("audit record %+v", r)
	}
}

// TestBrowserOtherTenantRefused: a tenant user's link and hand-typed URL
// to another tenant's page get the very page of a tenant that does not
// exist (nothing says the other tenant is there), and the user's own
// read-only page offers no change.
func TestBrowserOtherTenantRefused(t *testing.T) {
	e := newEnv(t, func(o *console.Options) { o.MaxAttemptsPerUser = 20 }) // signs in three times
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.bounce("globex", "lee@example.net", "msg-0002")
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	if _, main := b.page(); strings.Contains(main, "Globex") || strings.Contains(main, "Queue depth") {
		t.Errorf("a tenant user's overview shows another tenant or the relay:\n%s", main)
	}
	b.accessible("overview of a tenant user")

	var statuses []int
	for _, path := range []string{"/console/tenants/globex/suppressions?address=lee@example.net", "/console/tenants/nosuch/suppressions?address=lee@example.net"} {
		b.run(chromedp.Navigate(e.srv.URL + path))
		title, main := b.page()
		if !strings.HasPrefix(title, "Not Found") || strings.Contains(main, "Globex") || strings.Contains(main, "lee@") || strings.Contains(main, "msg-0002") {
			t.Errorf("%s as acme's user: %q\n%s", path, title, main)
		}
		b.accessible("404 page")
		statuses = append(statuses, e.status(path, "pat"))
	}
	if statuses[0] != http.StatusNotFound || statuses[1] != http.StatusNotFound {
		t.Errorf("statuses of another tenant's page and of no tenant's: %v, want 404 both", statuses)
	}

	b.run(chromedp.Navigate(e.srv.URL + "/console/tenants/acme/suppressions?address=x@example.net"))
	if _, main := b.page(); !strings.Contains(main, "not suppressed") || strings.Contains(main, "Stop mail to an address") {
		t.Errorf("a read-only user's own page:\n%s", main)
	}
}

// status signs username in with a plain client and returns the status
// of a GET of path.
func (e *env) status(path, username string) int {
	e.t.Helper()
	st, _, _ := e.get(e.signedIn(username), path)
	return st
}

// signedIn returns a plain client signed in as username.
func (e *env) signedIn(username string) *http.Client {
	e.t.Helper()
	e.clock.Add(30 * time.Second) // the browser used this step's code
	c := e.client()
	if st, _ := e.password(c, username, e.secrets[username].Password); st != http.StatusSeeOther {
		e.t.Fatalf("password: %d", st)
	}
	_, _, tok := e.get(c, "/console/sign-in/code")
	if st, _ := e.post(c, "/console/sign-in/code", map[string][]string{"csrf": {tok}, "code": {e.code(username)}}); st != http.StatusSeeOther {
		e.t.Fatalf("code: %d", st)
	}
	return c
}

// TestBrowserCrossSitePost: a page on another origin with a copy of the
// remove form, even with the session's own CSRF token in it, posts from
// the signed-in browser and is refused; the bounce stays.
func TestBrowserCrossSitePost(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.bounce("acme", "pat@example.net", "msg-0001")
	b := newBrowser(t, false)
	b.signIn(e, "ops")
	b.run(chromedp.Navigate(e.srv.URL + "/console/tenants/acme/suppressions?address=pat@example.net"))
	csrf := get(b, chromedp.Value(chromedp.CSS(`input[name=csrf]`)))

	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>Win a prize</title>
<form method="post" action="%s/console/tenants/acme/suppressions/remove">
<input type="hidden" name="csrf" value="%s"><input type="hidden" name="address" value="pat@example.net">
<input type="hidden" name="list" value="*"><input type="hidden" name="reason" value="bounce">
<button id="go">Claim</button></form>`, e.srv.URL, csrf)
	}))
	defer evil.Close()
	b.run(chromedp.Navigate(evil.URL), chromedp.Click(chromedp.CSS("#go")),
		chromedp.WaitVisible(chromedp.CSS("main h1")))
	if title, main := b.page(); !strings.HasPrefix(title, "Forbidden") || !strings.Contains(main, "another site") {
		t.Errorf("the cross-site post: %q\n%s", title, main)
	}
	es, err := e.sup.Lookup(context.Background(), "acme", "pat@example.net")
	if err != nil || len(es) != 1 {
		t.Fatalf("after the cross-site post: %v %v, want the bounce kept", es, err)
	}
	if recs, _ := e.audit.Records(context.Background(), "", 0, 10); len(recs) != 0 {
		t.Errorf("audit records of a refused post: %+v", recs)
	}
}

// TestBrowserImportCSV: an operator uploads a CSV from the suppressions
// page and reads its report: the counts and each rejected row with its
// line and why; the valid rows are on the list and the import is in the
// audit log under the console user.
func TestBrowserImportCSV(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	if err := e.tenants.PutList(context.Background(), tenant.List{Tenant: "acme", ID: "news", Name: "Newsletter", Kind: tenant.Marketing}); err != nil {
		t.Fatal(err)
	}
	e.bounce("acme", "old@example.net", "msg-0001")
	csv := filepath.Join(t.TempDir(), "opt-outs.csv")
	if err := os.WriteFile(csv, []byte("address,list,reason\n"+
		"ana@example.net,news,unsubscribe\n"+
		"not an address,*,import\n"+
		"bo@example.net,nosuch,import\n"+
		"old@example.net,*,bounce\n"+
		"Cy@Example.NET,*,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, true)
	b.signIn(e, "ops")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/suppressions"),
		chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/suppressions/import"]`)),
		chromedp.WaitVisible(chromedp.CSS("#file")))
	b.accessible("import")
	b.run(chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{csv}),
		chromedp.Click(chromedp.CSS("form.card button")),
		chromedp.WaitVisible(chromedp.CSS("section[aria-labelledby=report]")))
	figures := b.text("dl.report")
	for _, want := range []string{"Rows read\n5", "Valid\n3", "Added\n2", "Already there\n1", "Rejected\n2"} {
		if !strings.Contains(figures, want) {
			t.Errorf("the report lacks %q:\n%s", want, figures)
		}
	}
	rows := b.text("table.rows tbody")
	for _, want := range []string{"3\tnot an address", "4\tbo@example.net\t", `no list "nosuch"`} {
		if !strings.Contains(rows, want) {
			t.Errorf("the rejected rows lack %q:\n%s", want, rows)
		}
	}
	b.accessible("import report")
	b.shot("import")

	for _, addr := range []string{"ana@example.net", "cy@example.net"} {
		if es, err := e.sup.Lookup(context.Background(), "acme", addr); err != nil || len(es) != 1 {
			t.Errorf("%s after the import: %v %v", addr, es, err)
		}
	}
	// As the API's import, written in many transactions: a record before
	// the first write (202) and one of how it ended.
	recs, err := e.audit.Records(context.Background(), "acme", 0, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit records: %+v %v", recs, err)
	}
	for i, status := range []int{http.StatusAccepted, http.StatusOK} {
		if r := recs[i]; r.Actor != "console:ops" || r.Action != "POST /api/v1/tenants/:tenant/suppressions/import" ||
			r.Target != "/api/v1/tenants/acme/suppressions/import" || r.Status != status {
			t.Errorf("audit record %+v, want status %d", r, status)
		}
	}
}

// visit opens path and runs axe on it once its main landmark shows; it
// fails the test when the page does not contain want.
func (b *browser) visit(e *env, name, path, want string) {
	b.t.Helper()
	b.run(chromedp.Navigate(e.srv.URL+path), chromedp.WaitVisible(chromedp.CSS("main")))
	if _, main := b.page(); !strings.Contains(main, want) {
		b.t.Errorf("%s (%s) does not say %q:\n%s", name, path, want, main)
	}
	b.accessible(name)
}

// TestBrowserOperatorPagesAccessible: the pages the other browser tests
// do not reach pass axe: the sign-in page saying a password was wrong,
// every tenant's audit log, the filtered logs and a filter refused.
func TestBrowserOperatorPagesAccessible(t *testing.T) {
	e := newEnv(t, nil)
	en := e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	garcia(e)
	e.audited("acme", "console:ana", 3)
	b := newBrowser(t, true)

	b.run(chromedp.Navigate(e.srv.URL+"/console/sign-in"),
		chromedp.SendKeys(chromedp.CSS("#username"), "ops"),
		chromedp.SendKeys(chromedp.CSS("#password"), en.Password+"x"),
		chromedp.Click(chromedp.CSS("form.card button")),
		chromedp.WaitVisible(chromedp.CSS("p.problem")))
	if _, main := b.page(); !strings.Contains(main, "Wrong username or password") {
		t.Fatalf("a wrong password:\n%s", main)
	}
	b.accessible("sign-in after a wrong password")

	b.signIn(e, "ops")
	b.visit(e, "audit of every tenant", "/console/audit", "console:ana")
	b.visit(e, "audit filtered", "/console/audit?actor=console:ana&action=suppressions", "console:ana")
	b.visit(e, "events filtered", "/console/tenants/acme/events?type=message.bounced&recipient=nobody@EXAMPLE.org", "550 5.1.1")
	b.visit(e, "events, a filter refused", "/console/tenants/acme/events?from=yesterday", "From")
}

// TestBrowserReadOnlyPagesAccessible: a read-only user's pages, without
// their forms, and the pages that refuse them pass axe.
func TestBrowserReadOnlyPagesAccessible(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	garciaEverywhere(e)
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	b.visit(e, "tenant, read-only", "/console/tenants/acme", "Acme Dental")
	b.visit(e, "suppressions, read-only", "/console/tenants/acme/suppressions?address=maria.garcia@example.net", "bounce")
	b.visit(e, "domains, read-only", "/console/tenants/acme/domains", "Domains")
	b.visit(e, "webhooks, read-only", "/console/tenants/acme/webhooks", "Webhooks")
	b.visit(e, "privacy, read-only", "/console/tenants/acme/privacy?address=maria.garcia@example.net", "maria.garcia@example.net")
	b.visit(e, "403 page", "/console/audit", "Only an operator")
	b.visit(e, "import refused", "/console/tenants/acme/suppressions/import", "may only read")
}
