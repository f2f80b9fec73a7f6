package console_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/tenant"
)

// garciaEverywhere gives maria.garcia@example.net a message and a bounce
// at acme and a bounce at globex.
func garciaEverywhere(e *env) {
	e.t.Helper()
	e.message("acme", "20260101T000000-acme-0001", "maria.garcia@example.net", "other@example.org")
	e.bounce("acme", "maria.garcia@example.net", "20260101T000000-acme-0001")
	e.bounce("globex", "maria.garcia@example.net", "20260101T000000-globex-0009")
}

// download fetches path and decodes it as a privacy export.
func (e *env) download(c *http.Client, path string) (int, string, *privacy.Export) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var x privacy.Export
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &x); err != nil {
			e.t.Fatalf("the export is not JSON: %v\n%s", err, b)
		}
	}
	return resp.StatusCode, resp.Header.Get("Content-Disposition"), &x
}

// TestPrivacyScoped: a tenant's user reads what its tenant holds about an
// address and downloads it, with nothing of another tenant's; another
// tenant's page, export and erase answer as a missing tenant's; the
// erasure, which reaches every tenant, is refused to tenant users, the
// read-write ones too, and nothing is erased.
func TestPrivacyScoped(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.user(consoleusers.NewUser{Username: "rw", Tenant: "acme", Access: tenant.ReadWrite})
	garciaEverywhere(e)
	rw := e.signedIn("rw")
	q := "?address=" + url.QueryEscape("Maria.Garcia@Example.NET")

	st, page, tok := e.get(rw, "/console/tenants/acme/privacy"+q)
	if st != 200 || !strings.Contains(page, "maria.garcia@example.net") || !strings.Contains(page, "20260101T000000-acme-0001") ||
		strings.Contains(page, "globex-0009") || strings.Contains(page, "Erase the address") {
		t.Errorf("acme's privacy page for its read-write user: %d\n%s", st, page)
	}
	st, disp, x := e.download(rw, "/console/tenants/acme/privacy/export"+q)
	if st != 200 || !strings.HasPrefix(disp, "attachment") || x.Address != "maria.garcia@example.net" ||
		len(x.Suppressions) != 1 || x.Suppressions[0].Tenant != "acme" || len(x.Messages) != 1 || len(x.Events) == 0 {
		t.Errorf("acme's export: %d %q %+v", st, disp, x)
	}
	for _, ev := range x.Events {
		if ev.Data.Tenant != "acme" {
			t.Errorf("acme's export has another tenant's event: %+v", ev)
		}
	}

	_, missing, _ := e.get(rw, "/console/tenants/nosuch/privacy"+q)
	for _, path := range []string{"/console/tenants/globex/privacy" + q, "/console/tenants/globex/privacy/export" + q} {
		if st, body, _ := e.get(rw, path); st != 404 || body != missing {
			t.Errorf("%s for acme's user: %d, want the missing tenant's 404\n%s", path, st, body)
		}
	}
	erase := url.Values{"csrf": {tok}, "address": {"maria.garcia@example.net"}, "confirm": {"maria.garcia@example.net"}}
	if st, body := e.post(rw, "/console/tenants/globex/privacy/erase", erase); st != 404 || body != missing {
		t.Errorf("erasing at globex as acme's user: %d\n%s", st, body)
	}
	if st, _ := e.post(rw, "/console/tenants/acme/privacy/erase", erase); st != 403 {
		t.Errorf("erasing as acme's read-write user: %d, want 403", st)
	}
	pat := e.signedIn("pat")
	_, _, tok = e.get(pat, "/console/tenants/acme/privacy")
	erase.Set("csrf", tok)
	if st, _ := e.post(pat, "/console/tenants/acme/privacy/erase", erase); st != 403 {
		t.Errorf("erasing as acme's read-only user: %d, want 403", st)
	}
	for _, tn := range []string{"acme", "globex"} {
		if es, err := e.sup.Lookup(context.Background(), tn, "maria.garcia@example.net"); err != nil || len(es) != 1 || es[0].Address == "" {
			t.Errorf("%s's entry after refused erasures: %+v %v", tn, es, err)
		}
	}
	if recs, _ := e.audit.Records(context.Background(), "", 0, 10); len(recs) != 0 {
		t.Errorf("audit records of refused erasures: %+v", recs)
	}
}

// TestPrivacyErase: an operator's erasure needs the address typed again
// (a different one erases nothing); then the address is gone from every
// tenant's events, messages and entries, whose suppressions stay in
// force; the page says what was erased, and the audit log names the
// console user without naming the address.
func TestPrivacyErase(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	garciaEverywhere(e)
	ops := e.signedIn("ops")
	ctx := context.Background()
	_, _, tok := e.get(ops, "/console/tenants/acme/privacy?address=maria.garcia@example.net")

	st, body := e.post(ops, "/console/tenants/acme/privacy/erase", url.Values{"csrf": {tok},
		"address": {"maria.garcia@example.net"}, "confirm": {"maria.garcla@example.net"}})
	if st != 400 || !strings.Contains(body, "Nothing was erased") {
		t.Errorf("a mistyped confirmation: %d\n%s", st, body)
	}
	svc := &privacy.Service{Suppressions: e.sup, Events: boltdb.Events(e.db), Queue: e.queue}
	before, err := svc.Export(ctx, "maria.garcia@example.net")
	if err != nil || len(before.Suppressions) != 2 || len(before.Messages) != 1 {
		t.Fatalf("after a mistyped confirmation: %+v %v", before, err)
	}

	st, body = e.post(ops, "/console/tenants/acme/privacy/erase", url.Values{"csrf": {tok},
		"address": {"maria.garcia@example.net"}, "confirm": {"Maria.Garcia@EXAMPLE.net"}})
	if st != 200 || !strings.Contains(body, "What was erased of maria.garcia@example.net") || !strings.Contains(body, "every tenant") {
		t.Fatalf("erase: %d\n%s", st, body)
	}
	after, err := svc.Export(ctx, "maria.garcia@example.net")
	if err != nil || len(after.Events) != 0 || len(after.Messages) != 0 {
		t.Errorf("the export after the erasure: %+v %v", after, err)
	}
	for _, tn := range []string{"acme", "globex"} {
		es, err := e.sup.Lookup(ctx, tn, "maria.garcia@example.net")
		if err != nil || len(es) != 1 || es[0].Address != "" {
			t.Errorf("%s's entry after the erasure: %+v %v, want it in force without the address", tn, es, err)
		}
	}
	recs, err := e.audit.Records(ctx, "", 0, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit records: %+v %v", recs, err)
	}
	for i, status := range []int{http.StatusAccepted, http.StatusOK} {
		r := recs[i]
		if r.Actor != "console:ops" || r.Action != "DELETE /api/v1/privacy/:address" || r.Target != "/api/v1/privacy/[erased]" || r.Status != status {
			t.Errorf("audit record %+v, want status %d", r, status)
		}
		if b, _ := json.Marshal(r); strings.Contains(strings.ToLower(string(b)), "garcia") {
			t.Errorf("the audit record names the address: %s", b)
		}
	}
}
