package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/tenant"
)

// TestBrowserTenantCredentials: an operator creates a tenant, sets its
// postal address, makes a password credential whose password is shown
// once and works, revokes it only after typing its username, and makes
// an API key; every change is audited under the console user.
func TestBrowserTenantCredentials(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	ctx := context.Background()
	b := newBrowser(t, true)
	b.signIn(e, "ops")
	b.run(chromedp.Click(chromedp.CSS(`nav a[href="/console/tenants"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.tenants")))
	b.accessible("tenants")
	b.shot("tenants")
	b.run(chromedp.SendKeys(chromedp.CSS("#id"), "initech"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Initech Vets"),
		chromedp.Click(chromedp.CSS("form.card button")))
	b.waitText("p.notice", "tenant was created")
	b.run(chromedp.SetValue(chromedp.CSS("#postal_address"), "4 Office Park, Austin TX"),
		chromedp.Click(chromedp.CSS(`form[action="/console/tenants/initech"] button`)))
	b.waitText("p.notice", "postal address were saved")
	if tn, err := e.tenants.Tenant(ctx, "initech"); err != nil || tn.PostalAddress != "4 Office Park, Austin TX" {
		t.Fatalf("after the edit: %+v %v", tn, err)
	}

	b.run(chromedp.Click(chromedp.CSS(`form[action="/console/tenants/initech/credentials"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#secret-value")))
	password := get(b, chromedp.Value(chromedp.CSS("#secret-value")))
	username := b.text("table.credentials tbody tr td code")
	if _, err := e.tenants.Authenticate(ctx, username, password); err != nil {
		t.Fatalf("the password shown (%q for %q) does not authenticate: %v", password, username, err)
	}
	b.accessible("tenant with a new credential")
	b.shot("tenant")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/initech"), chromedp.WaitVisible(chromedp.CSS("table.credentials")))
	if _, main := b.page(); strings.Contains(main, password) {
		t.Errorf("the password is shown again")
	}

	b.run(chromedp.SendKeys(chromedp.CSS("form.revoke input[name=confirm]"), "not-it"),
		chromedp.Click(chromedp.CSS("form.revoke button")),
		chromedp.WaitVisible(chromedp.CSS("p.problem")))
	if _, err := e.tenants.Authenticate(ctx, username, password); err != nil {
		t.Fatalf("revoked without the typed confirmation: %v", err)
	}
	b.run(chromedp.SendKeys(chromedp.CSS("form.revoke input[name=confirm]"), username),
		chromedp.Click(chromedp.CSS("form.revoke button")))
	b.waitText("p.notice", "was revoked")
	if _, err := e.tenants.Authenticate(ctx, username, password); err == nil {
		t.Fatal("the revoked credential still authenticates")
	}

	b.run(chromedp.SendKeys(chromedp.CSS("#key-name"), "crm"),
		chromedp.Click(chromedp.CSS(`form[action="/console/tenants/initech/api-keys"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#secret-value")))
	key := get(b, chromedp.Value(chromedp.CSS("#secret-value")))
	if k, err := e.tenants.AuthenticateAPIKey(ctx, key); err != nil || k.Tenant != "initech" || k.Access != tenant.ReadWrite {
		t.Fatalf("the key shown: %+v %v", k, err)
	}
	b.accessible("tenant with a new API key")

	recs, err := e.audit.Records(ctx, "", 0, 20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Actor != "console:ops" {
			t.Errorf("actor of %+v", r)
		}
		got = append(got, r.Action+" "+r.Target)
	}
	want := []string{
		"POST /api/v1/tenants /api/v1/tenants",
		"PATCH /api/v1/tenants/:tenant /api/v1/tenants/initech",
		"POST /api/v1/tenants/:tenant/credentials /api/v1/tenants/initech/credentials",
		"DELETE /api/v1/tenants/:tenant/credentials/:id /api/v1/tenants/initech/credentials/",
		"POST /api/v1/tenants/:tenant/api-keys /api/v1/tenants/initech/api-keys",
	}
	if len(got) != len(want) {
		t.Fatalf("audit:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("audit record %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestTenantPagesAccess: a tenant's read-write user is sent to its own
// tenant, gets another tenant's page as one that does not exist, and may
// neither create tenants nor API keys; a read-only user gets no forms
// and a 403 when posting one anyway.
func TestTenantPagesAccess(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "rw", Tenant: "acme", Access: tenant.ReadWrite})
	e.user(consoleusers.NewUser{Username: "ro", Tenant: "acme", Access: tenant.ReadOnly})
	ctx := context.Background()
	rw := e.signedIn("rw")
	if st, _, _ := e.get(rw, "/console/tenants"); st != http.StatusSeeOther {
		t.Errorf("a tenant user's tenants page: %d, want a redirect to the own tenant", st)
	}
	_, other, _ := e.get(rw, "/console/tenants/globex")
	_, none, _ := e.get(rw, "/console/tenants/nosuch")
	if other != none || strings.Contains(other, "Globex") {
		t.Errorf("another tenant's page differs from no tenant's:\n%s\n---\n%s", other, none)
	}
	st, page, tok := e.get(rw, "/console/tenants/acme")
	if st != http.StatusOK || !strings.Contains(page, "Create the credential") || strings.Contains(page, "Create an API key") {
		t.Errorf("a read-write user's page: %d\n%s", st, page)
	}
	for path, form := range map[string]url.Values{
		"/console/tenants":                 {"id": {"evil"}, "name": {"Evil"}},
		"/console/tenants/acme/api-keys":   {"access": {"read-write"}},
		"/console/tenants/globex/api-keys": {"access": {"read-write"}},
	} {
		form.Set("csrf", tok)
		if st, _ := e.post(rw, path, form); st != http.StatusForbidden {
			t.Errorf("POST %s by a tenant user: %d, want 403", path, st)
		}
	}
	if st, _ := e.post(rw, "/console/tenants/globex/credentials", url.Values{"csrf": {tok}}); st != http.StatusNotFound {
		t.Errorf("a credential for another tenant: %d, want 404", st)
	}
	if st, _ := e.post(rw, "/console/tenants/acme/credentials", url.Values{"csrf": {tok}, "kind": {"ip"}, "cidr": {"10.0.0.0/8"}}); st != http.StatusBadRequest {
		t.Errorf("a tenant user's network credential for a /8: %d, want 400", st)
	}
	if _, err := e.tenants.Tenant(ctx, "evil"); err == nil {
		t.Error("a tenant user created a tenant")
	}
	for _, id := range []string{"acme", "globex"} {
		if cs, _ := e.tenants.Credentials(ctx, id); len(cs) != 0 {
			t.Errorf("credentials of %s after refusals: %+v", id, cs)
		}
	}

	ro := e.signedIn("ro")
	_, page, tok = e.get(ro, "/console/tenants/acme")
	if strings.Contains(page, `method="post" action="/console/tenants/acme`) {
		t.Errorf("a read-only user's page has forms:\n%s", page)
	}
	if st, _ := e.post(ro, "/console/tenants/acme/credentials", url.Values{"csrf": {tok}}); st != http.StatusForbidden {
		t.Errorf("a read-only user's new credential: %d, want 403", st)
	}
	if cs, _ := e.tenants.Credentials(ctx, "acme"); len(cs) != 0 {
		t.Errorf("credentials after a read-only user's post: %+v", cs)
	}
}

// waitText waits until the element sel holds text (the page after a
// form's answer, not the one it was sent from).
func (b *browser) waitText(sel, text string) {
	b.t.Helper()
	js, _ := json.Marshal(sel)
	want, _ := json.Marshal(text)
	poll := chromedp.Poll[bool](fmt.Sprintf(`(document.querySelector(%s)?.textContent ?? "").includes(%s)`, js, want))
	// A poll started on the page the form was sent from ends when the
	// browser navigates; it is started again on the next page, until
	// the test's deadline.
	for {
		_, err := chromedp.Run(b.ctx, poll)
		if err == nil {
			return
		}
		if b.ctx.Err() != nil {
			b.t.Fatalf("waiting for %q in %s: %v", text, sel, err)
		}
	}
}

// TestTenantFormsRefuseWhatIsNotText: a name or postal address with a NUL
// or bytes that are not UTF-8 is refused (400, the form again) and not
// stored: PostgreSQL refuses such text (a 500 there), bbolt kept it.
func TestTenantFormsRefuseWhatIsNotText(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	ctx := context.Background()
	ops := e.signedIn("ops")
	_, _, tok := e.get(ops, "/console/tenants/acme")
	for path, form := range map[string]url.Values{
		"/console/tenants":               {"id": {"evil"}, "name": {"Ev\x00il"}},
		"/console/tenants/acme":          {"name": {"Acme"}, "postal_address": {"1 Main St\xff"}},
		"/console/tenants/acme/lists":    {"id": {"news2"}, "name": {"News\x00"}, "kind": {"marketing"}},
		"/console/tenants/acme/api-keys": {"access": {"read-write"}, "name": {"ci\x00"}},
	} {
		form.Set("csrf", tok)
		if st, _ := e.post(ops, path, form); st != http.StatusBadRequest {
			t.Errorf("POST %s with a value that is not text: %d, want 400", path, st)
		}
	}
	if _, err := e.tenants.Tenant(ctx, "evil"); err == nil {
		t.Error("a tenant named with a NUL was created")
	}
	if a, err := e.tenants.Tenant(ctx, "acme"); err != nil || strings.ContainsRune(a.PostalAddress, utf8.RuneError) || strings.Contains(a.PostalAddress, "\xff") {
		t.Errorf("acme after the refused edit: %+v, %v", a, err)
	}
	if _, err := e.tenants.List(ctx, "acme", "news2"); err == nil {
		t.Error("a list named with a NUL was created")
	}
	if cs, _ := e.tenants.Credentials(ctx, "acme"); len(cs) != 0 {
		t.Errorf("credentials after the refused key: %+v", cs)
	}
}
