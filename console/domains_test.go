package console_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/dnstest"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
)

// fakeDNS is the TXT records the console's DNS check finds.
type fakeDNS struct {
	mu  sync.Mutex
	txt map[string][]string
}

func (d *fakeDNS) publish(name, value string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[name] = append(d.txt[name], value)
}

func (d *fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.txt[strings.TrimSuffix(name, ".")]; ok {
		return append([]string(nil), v...), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// domainEnv is a console whose DNS is dns, with acme's domain
// acme.example and its two first keys, published.
func domainEnv(t *testing.T, more ...func(*console.Options)) (*env, *fakeDNS) {
	t.Helper()
	dns := &fakeDNS{txt: map[string][]string{}}
	e := newEnv(t, func(o *console.Options) {
		o.LookupTXT, o.Hostname = dns.LookupTXT, "relay.example.com"
		for _, f := range more {
			f(o)
		}
	})
	if err := e.tenants.SetSealKey([]byte("console test server key, 32 b..")); err != nil {
		t.Fatal(err)
	}
	d, keys, err := e.tenants.PrepareDomain("acme", "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.tenants.AddDomain(context.Background(), d, keys...); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		dns.publish(k.Name(), k.TXT)
	}
	return e, dns
}

// keyStates returns acme.example's keys by algorithm and state.
type states map[string][]tenant.DKIMKey

// String is the selectors by state, for failures.
func (st states) String() string {
	var b strings.Builder
	for s, ks := range st {
		b.WriteString(s + ":")
		for _, k := range ks {
			b.WriteString(" " + k.Selector)
		}
		b.WriteString("; ")
	}
	return b.String()
}

func keyStates(t *testing.T, e *env) states {
	t.Helper()
	keys, err := e.tenants.Keys(context.Background(), "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	out := states{}
	for _, k := range keys {
		out[k.Algorithm+" "+k.State] = append(out[k.Algorithm+" "+k.State], k)
	}
	return out
}

// TestBrowserRotateKey: a tenant's read-write user rotates the domain's
// RSA key in the browser. The records to publish show what the DNS holds;
// the new key is refused activation while its record is not in the DNS;
// once it is, activation retires the old key, which is then deleted. Each
// step is in the audit log as the API route under the console user, and
// every page passes axe-core.
func TestBrowserRotateKey(t *testing.T) {
	e, dns := domainEnv(t)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadWrite})
	old := keyStates(t, e)["rsa-sha256 active"]
	if len(old) != 1 {
		t.Fatalf("keys before: %v", keyStates(t, e))
	}
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	b.run(chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/domains"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.domains")))
	b.accessible("domains")
	b.run(chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/domains/acme.example"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.records")))
	recs := b.text("table.records tbody")
	for _, want := range []string{old[0].Name(), "v=DKIM1; k=rsa; p=", "v=spf1 a:relay.example.com ~all", "_dmarc.acme.example", "ok", "missing"} {
		if !strings.Contains(recs, want) {
			t.Errorf("the records lack %q:\n%s", want, recs)
		}
	}
	b.accessible("domain")

	b.run(chromedp.SetValue(chromedp.CSS("#algorithm"), "rsa"),
		chromedp.Click(chromedp.CSS("form.publish button")),
		chromedp.WaitVisible(chromedp.CSS("p.notice")))
	fresh := keyStates(t, e)["rsa-sha256 published"]
	if len(fresh) != 1 {
		t.Fatalf("after Publish: %v", keyStates(t, e))
	}
	k := fresh[0]
	if recs := b.text("table.records tbody"); !strings.Contains(recs, k.Name()) {
		t.Errorf("the new key's record is not among those to publish:\n%s", recs)
	}
	b.accessible("domain after publishing")

	activate := chromedp.Click(chromedp.CSS(`form.activate button`))
	b.run(activate, chromedp.WaitVisible(chromedp.CSS("p.problem")))
	if p := b.text("p.problem"); !strings.Contains(p, "not published") || !strings.Contains(p, k.Name()) {
		t.Errorf("activating an unpublished key: %q", p)
	}
	if len(keyStates(t, e)["rsa-sha256 published"]) != 1 {
		t.Fatalf("a key whose record is not in the DNS was activated: %v", keyStates(t, e))
	}

	dns.publish(k.Name(), k.TXT)
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/domains/acme.example"),
		chromedp.WaitVisible(chromedp.CSS("form.activate")), activate,
		chromedp.WaitVisible(chromedp.CSS("p.notice")))
	st := keyStates(t, e)
	if len(st["rsa-sha256 active"]) != 1 || st["rsa-sha256 active"][0].Selector != k.Selector ||
		len(st["rsa-sha256 retired"]) != 1 || st["rsa-sha256 retired"][0].Selector != old[0].Selector {
		t.Fatalf("after Activate: %v", st)
	}
	b.accessible("domain after activating")
	b.shot("domain")

	b.run(chromedp.Click(chromedp.CSS(`form.delete button`)), chromedp.WaitNotPresent(chromedp.CSS("form.delete")))
	if n := b.text("p.notice"); !strings.Contains(n, "deleted") {
		t.Errorf("after Delete: %q", n)
	}
	if st := keyStates(t, e); len(st["rsa-sha256 retired"]) != 0 {
		t.Fatalf("after Delete: %v", st)
	}
	if strings.Contains(b.text("table.records tbody"), old[0].Name()) {
		t.Errorf("the deleted key's record is still advised")
	}

	recsA, err := e.audit.Records(context.Background(), "acme", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	const keys = "/api/v1/tenants/acme/domains/acme.example/keys"
	want := []struct {
		action, target string
		status         int
	}{
		{"POST /api/v1/tenants/:tenant/domains/:domain/keys", keys, http.StatusCreated},
		{"POST /api/v1/tenants/:tenant/domains/:domain/keys/:selector/activate", keys + "/" + k.Selector + "/activate", http.StatusOK},
		{"DELETE /api/v1/tenants/:tenant/domains/:domain/keys/:selector", keys + "/" + old[0].Selector, http.StatusNoContent},
	}
	if len(recsA) != len(want) {
		t.Fatalf("audit records %+v, want %d", recsA, len(want))
	}
	for i, w := range want {
		if r := recsA[i]; r.Actor != "console:pat" || r.Action != w.action || r.Target != w.target || r.Status != w.status {
			t.Errorf("audit record %d: %+v, want %+v", i, r, w)
		}
	}
}

// TestDomainPagesScoped: another tenant's domain is a page that does not
// exist, and a read-only user sees the records but no rotation form and
// cannot post one.
func TestDomainPagesScoped(t *testing.T) {
	e, _ := domainEnv(t)
	e.user(consoleusers.NewUser{Username: "lee", Tenant: "globex", Access: tenant.ReadWrite})
	e.user(consoleusers.NewUser{Username: "ro", Tenant: "acme", Access: tenant.ReadOnly})
	for _, path := range []string{"/console/tenants/globex/domains/acme.example", "/console/tenants/acme/domains/acme.example"} {
		if st := e.status(path, "lee"); st != http.StatusNotFound {
			t.Errorf("%s as globex's user: %d, want 404", path, st)
		}
	}
	c := e.signedIn("ro")
	st, body, tok := e.get(c, "/console/tenants/acme/domains/acme.example")
	if st != http.StatusOK || !strings.Contains(body, "_domainkey.acme.example") || strings.Contains(body, "form.publish") ||
		strings.Contains(body, "Publish a new key") || strings.Contains(body, "Activate") {
		t.Errorf("a read-only user's domain page: %d\n%s", st, body)
	}
	if st, _ := e.post(c, "/console/tenants/acme/domains/acme.example/keys", map[string][]string{"csrf": {tok}, "algorithm": {"rsa"}}); st != http.StatusForbidden {
		t.Errorf("a read-only user's publish: %d, want 403", st)
	}
	if n := len(keyStates(t, e)["rsa-sha256 published"]); n != 0 {
		t.Errorf("a read-only user published %d keys", n)
	}
}

// TestNoSuchKey: activating or deleting a selector the domain does not
// have (or none) answers 404 on the domain's page and changes no key.
func TestNoSuchKey(t *testing.T) {
	e, _ := domainEnv(t)
	e.user(consoleusers.NewUser{Username: "rw", Tenant: "acme", Access: tenant.ReadWrite})
	rw := e.signedIn("rw")
	_, _, tok := e.get(rw, "/console/tenants/acme/domains/acme.example")
	snapshot := func() string {
		keys, err := e.tenants.Keys(context.Background(), "acme.example")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k.Selector + " " + k.State + "; ")
		}
		return b.String()
	}
	before := snapshot()
	for _, action := range []string{"activate", "delete"} {
		for _, sel := range []string{"nosuch", ""} {
			st, body := e.post(rw, "/console/tenants/acme/domains/acme.example/keys/"+action, url.Values{"csrf": {tok}, "selector": {sel}, "force": {"yes"}})
			if st != http.StatusNotFound || !strings.Contains(body, "The domain has no such key.") {
				t.Errorf("%s of selector %q: %d, want the domain page's 404\n%s", action, sel, st, body)
			}
		}
	}
	if after := snapshot(); after != before {
		t.Errorf("keys after refused changes: %s, were %s", after, before)
	}
}

// TestAddDomain: an operator adds a tenant's domain from the Domains
// page, as the API's POST …/domains, with its keys and the audit record
// under the console user; a domain another tenant has is refused without
// naming it; a tenant's read-write user, whom the API refuses too, gets
// no form and a 403.
func TestAddDomain(t *testing.T) {
	e, _ := domainEnv(t)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.user(consoleusers.NewUser{Username: "rw", Tenant: "acme", Access: tenant.ReadWrite})
	ops := e.signedIn("ops")
	_, page, tok := e.get(ops, "/console/tenants/acme/domains")
	if !strings.Contains(page, `action="/console/tenants/acme/domains"`) {
		t.Fatalf("the operator's Domains page has no form:\n%s", page)
	}
	st, _ := e.post(ops, "/console/tenants/acme/domains", url.Values{"csrf": {tok}, "domain": {"News.Acme.Example"}})
	if st != http.StatusSeeOther {
		t.Fatalf("adding a domain: %d", st)
	}
	d, err := e.tenants.Domain(context.Background(), "news.acme.example")
	keys, _ := e.tenants.Keys(context.Background(), "news.acme.example")
	if err != nil || d.Tenant != "acme" || len(keys) != 2 {
		t.Fatalf("the domain after adding: %+v %v, keys %d", d, err, len(keys))
	}
	if _, page, _ := e.get(ops, "/console/tenants/acme/domains/news.acme.example?done=domain-added"); !strings.Contains(page, "._domainkey.news.acme.example") {
		t.Errorf("the new domain's page lacks its records:\n%s", page)
	}
	recs, _ := e.audit.Records(context.Background(), "acme", 0, 10)
	if len(recs) != 1 || recs[0].Actor != "console:ops" || recs[0].Action != "POST /api/v1/tenants/:tenant/domains" ||
		recs[0].Target != "/api/v1/tenants/acme/domains" || recs[0].Status != http.StatusCreated {
		t.Errorf("audit records: %+v", recs)
	}

	st, taken := e.post(ops, "/console/tenants/globex/domains", url.Values{"csrf": {tok}, "domain": {"acme.example"}})
	if st != http.StatusConflict || !strings.Contains(taken, "already registered") || strings.Contains(taken, "Acme") {
		t.Errorf("another tenant's domain: %d\n%s", st, taken)
	}
	if st, bad := e.post(ops, "/console/tenants/acme/domains", url.Values{"csrf": {tok}, "domain": {"not a domain"}}); st != http.StatusBadRequest || !strings.Contains(bad, "Not added") {
		t.Errorf("a bad name: %d\n%s", st, bad)
	}

	rw := e.signedIn("rw")
	_, page, rwTok := e.get(rw, "/console/tenants/acme/domains")
	if strings.Contains(page, `action="/console/tenants/acme/domains"`) {
		t.Errorf("a tenant's user is offered the form:\n%s", page)
	}
	if st, _ := e.post(rw, "/console/tenants/acme/domains", url.Values{"csrf": {rwTok}, "domain": {"evil.example"}}); st != http.StatusForbidden {
		t.Errorf("a tenant's read-write user adding a domain: %d, want 403", st)
	}
	if _, err := e.tenants.Domain(context.Background(), "evil.example"); err == nil {
		t.Error("the tenant user's domain was added")
	}
}

// TestBrowserCopyRecord: the copy button beside a DNS record, named for
// the record it copies, puts the record's value on the clipboard and
// says so; the page passes axe with the buttons shown.
func TestBrowserCopyRecord(t *testing.T) {
	e, _ := domainEnv(t)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/domains/acme.example"),
		chromedp.WaitVisible(chromedp.CSS(`button[data-copy="record-0-value"]`)))
	value := b.text("#record-0-value")
	name := get(b, chromedp.Evaluate[string](`document.querySelector('button[data-copy="record-0-value"]').textContent`))
	if !strings.HasPrefix(name, "Copy the value of") || !strings.Contains(name, "._domainkey.acme.example") {
		t.Errorf("the copy button's accessible name: %q", name)
	}
	b.accessible("domain with copy buttons")
	// Reading the clipboard back needs the permission a person would give.
	b.run(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: "clipboard-read"}, Setting: cdpbrowser.PermissionSettingGranted,
			Origin: e.srv.URL})
		return err
	}))
	b.run(chromedp.Click(chromedp.CSS(`button[data-copy="record-0-value"]`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("copy-status").textContent.startsWith("Copied")`))
	if got := b.text("#copy-status"); got != "Copied: "+value {
		t.Errorf("after Copy: %q, want the record's value %q", got, value)
	}
	clip := get(b, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if clip != value {
		t.Errorf("the clipboard holds %q, want %q", clip, value)
	}
}

// TestBrowserReadiness: an operator goes from a tenant's domains (with
// the form to add one) to a domain's readiness report, a table of every
// check with its status and fix; the domain's published DKIM keys pass,
// the plain-http base URL fails its check, the summary says the domain
// is not ready, and each page passes axe.
func TestBrowserReadiness(t *testing.T) {
	dns := dnstest.Start(t, `relay.example.com. A 192.0.2.10`)
	e, _ := domainEnv(t, func(o *console.Options) {
		o.Readiness = readiness.New(readiness.Options{
			Resolver: readiness.NewResolver(dns.Addr), Hostname: "relay.example.com",
			ReturnPathDomain: "bounces.relay.example.com", MailtoDomain: "unsubscribe.relay.example.com",
			BaseURL: "http://127.0.0.1:1", Timeout: 10 * time.Second,
		})
	})
	keys, err := e.tenants.Keys(context.Background(), "acme.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		parts := dkim.SplitTXT(k.TXT)
		for i, p := range parts {
			parts[i] = strconv.Quote(p)
		}
		dns.Set(t, k.Name()+". TXT "+strings.Join(parts, " "))
	}
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	b := newBrowser(t, true)
	b.signIn(e, "ops")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/domains"),
		chromedp.WaitVisible(chromedp.CSS("form.add-domain")))
	b.accessible("domains with the form to add one")
	b.run(chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/domains/acme.example"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.records")),
		chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/domains/acme.example/readiness"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.checks")))
	title, main := b.page()
	if !strings.HasPrefix(title, "Readiness: acme.example") || !strings.Contains(main, "acme.example is not ready") {
		t.Errorf("the readiness page: %q\n%s", title, main)
	}
	rows := b.text("table.checks tbody")
	for _, k := range keys {
		if !strings.Contains(rows, "dkim:"+k.Selector+"\tok") {
			t.Errorf("the check of published key %s is not ok:\n%s", k.Selector, rows)
		}
	}
	if !strings.Contains(rows, "https\tfail") {
		t.Errorf("the https check of a plain-http base URL does not fail:\n%s", rows)
	}
	// A DKIM record is hundreds of characters without a space: the table
	// must wrap it, not run off the side of the window.
	if w := get(b, chromedp.Evaluate[int](`document.documentElement.scrollWidth - window.innerWidth`)); w > 0 {
		t.Errorf("the readiness page is %d pixels wider than the window", w)
	}
	b.accessible("readiness")
	b.shot("readiness")
}
