package admin

import (
	"net/http"
	"strings"
	"testing"
)

type keyBody struct {
	ID, Access, Key, Name string
}

func (e *env) apiKey(tenantID, access string) keyBody {
	e.t.Helper()
	var k keyBody
	e.want(201, "POST", "/api/v1/tenants/"+tenantID+"/api-keys", `{"access":"`+access+`","name":"ci"}`, &k)
	if !strings.HasPrefix(k.Key, "heed_") || k.Access != access {
		e.t.Fatalf("key %+v", k)
	}
	return k
}

// pathFor fills a route's parameters with values that name acme's
// resources (or plausible ones).
func pathFor(path string) string {
	return strings.NewReplacer(":tenant", "acme", ":id", "01jaz0000000000000000000000", ":domain", "mail.acme.example",
		":selector", "s1", ":list", "marketing", ":address", "pat@example.net", ":endpoint", "default", ":event", "1").Replace(path)
}

// TestTenantIsolation runs every route with another tenant's read-write
// key: each one that names a tenant answers 404 (another tenant's
// resources do not exist for the key), each operator route 403; none
// changes or shows acme's data. acme's own key reaches its routes.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	e.want(201, "POST", "/api/v1/tenants/acme/domains", `{"domain":"mail.acme.example"}`, nil)
	e.want(201, "PUT", "/api/v1/tenants/acme/webhook", `{"url":"https://hooks.acme.example/"}`, nil)
	e.want(201, "PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", `{"list":"*"}`, nil)
	own, foreign := e.apiKey("acme", "read-write"), e.apiKey("other", "read-write")

	routes := (&server{}).routes()
	checked := 0
	for _, r := range routes {
		if r.perm == public {
			continue
		}
		path := pathFor(r.path)
		body := ""
		if r.method == "POST" || r.method == "PUT" || r.method == "PATCH" {
			body = `{}`
		}
		resp, b := e.callAs(foreign.Key, r.method, path, body)
		switch r.perm {
		case operator:
			problem(t, resp, b, http.StatusForbidden)
		case tenantRead, tenantWrite:
			problem(t, resp, b, http.StatusNotFound)
		case keyRead:
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"acme"`) {
				t.Errorf("%s %s with another tenant's key shows acme's data: %s", r.method, path, b)
			}
		}
		checked++
		if r.perm == tenantRead || r.perm == tenantWrite {
			resp, b := e.callAs(own.Key, r.method, path, body)
			if resp.StatusCode == 401 || resp.StatusCode == 403 {
				t.Errorf("%s %s with acme's own key: %d %s", r.method, path, resp.StatusCode, b)
			}
		}
	}
	t.Logf("%d routes checked", checked)
	// acme's data is intact.
	var list struct{ Suppressions []any }
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions", "", &list)
	if len(list.Suppressions) != 1 {
		t.Errorf("acme's suppressions after the run: %+v", list)
	}
}

// TestAPIKeys: read-only keys read and cannot change; keys are hashed at
// rest, listed without their secret, revocable; a forged one is 401.
func TestAPIKeys(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	ro, rw := e.apiKey("acme", "read-only"), e.apiKey("acme", "read-write")

	resp, b := e.callAs(ro.Key, "GET", "/api/v1/tenants/acme/suppressions", "")
	if resp.StatusCode != 200 {
		t.Fatalf("read-only key reading: %d %s", resp.StatusCode, b)
	}
	resp, b = e.callAs(ro.Key, "PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", `{}`)
	problem(t, resp, b, http.StatusForbidden)
	resp, b = e.callAs(rw.Key, "PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", `{}`)
	if resp.StatusCode != 201 {
		t.Fatalf("read-write key writing: %d %s", resp.StatusCode, b)
	}
	// Keys manage no keys, and create no tenants.
	resp, b = e.callAs(rw.Key, "POST", "/api/v1/tenants/acme/api-keys", `{}`)
	problem(t, resp, b, http.StatusForbidden)
	resp, b = e.callAs(rw.Key, "POST", "/api/v1/tenants", `{"id":"x","name":"x"}`)
	problem(t, resp, b, http.StatusForbidden)

	var list struct {
		APIKeys []keyBody `json:"api_keys"`
	}
	e.want(200, "GET", "/api/v1/tenants/acme/api-keys", "", &list)
	if len(list.APIKeys) != 2 || list.APIKeys[0].Key != "" || list.APIKeys[1].Key != "" {
		t.Fatalf("listed %+v", list)
	}
	// Not among the SMTP credentials.
	var creds struct{ Credentials []any }
	e.want(200, "GET", "/api/v1/tenants/acme/credentials", "", &creds)
	if len(creds.Credentials) != 0 {
		t.Errorf("API keys listed as SMTP credentials: %+v", creds)
	}
	// Forged: right id, wrong secret; a key's shape with nothing behind it.
	// (The secret's last character is changed to another one: replacing it
	// with a fixed letter left the key as it was once in 32 runs.)
	last := ro.Key[len(ro.Key)-1]
	other := "x"
	if last == 'x' {
		other = "y"
	}
	for _, forged := range []string{ro.Key[:len(ro.Key)-1] + other, "heed_nothing_here", "heed_"} {
		resp, b := e.callAs(forged, "GET", "/api/v1/tenants/acme/suppressions", "")
		problem(t, resp, b, http.StatusUnauthorized)
	}
	// Revoked.
	e.want(204, "DELETE", "/api/v1/tenants/acme/api-keys/"+ro.ID, "", nil)
	resp, b = e.callAs(ro.Key, "GET", "/api/v1/tenants/acme/suppressions", "")
	problem(t, resp, b, http.StatusUnauthorized)
	e.wantProblem(404, "DELETE", "/api/v1/tenants/acme/api-keys/"+ro.ID, "")
	e.wantProblem(400, "POST", "/api/v1/tenants/acme/api-keys", `{"access":"admin"}`)
	// Deleting the tenant revokes its keys.
	e.want(204, "DELETE", "/api/v1/tenants/acme", "", nil)
	e.createTenant("acme")
	resp, b = e.callAs(rw.Key, "GET", "/api/v1/tenants/acme/suppressions", "")
	problem(t, resp, b, http.StatusUnauthorized)
}

// TestAudit: one record per change that succeeded, none for reads or
// refusals, with who, what, when and from where; a tenant's key reads its
// own tenant's records only.
func TestAudit(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	k := e.apiKey("acme", "read-write")
	e.want(200, "GET", "/api/v1/tenants/acme", "", nil)                                                  // a read
	e.wantProblem(400, "PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", `{"reason":"bogus"}`) // refused
	resp, b := e.callAs(k.Key, "PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", `{}`)
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var page struct {
		Records []AuditRecord
		Next    string
	}
	e.want(200, "GET", "/api/v1/audit", "", &page)
	want := []struct{ actor, action, tenant string }{
		{"operator:", "POST /api/v1/tenants", ""},
		{"operator:", "POST /api/v1/tenants", ""},
		{"operator:", "POST /api/v1/tenants/:tenant/api-keys", "acme"},
		{"api_key:" + k.ID, "PUT /api/v1/tenants/:tenant/suppressions/:address", "acme"},
	}
	if len(page.Records) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(page.Records), len(want), page.Records)
	}
	for i, w := range want {
		r := page.Records[i]
		if !strings.HasPrefix(r.Actor, w.actor) || r.Action != w.action || r.Tenant != w.tenant ||
			r.RemoteIP != "127.0.0.1" || r.Time.IsZero() || r.Status/100 != 2 {
			t.Errorf("record %d: %+v, want %+v", i, r, w)
		}
	}
	if page.Records[3].Target != "/api/v1/tenants/acme/suppressions/pat@example.net" {
		t.Errorf("target %q", page.Records[3].Target)
	}
	// The key sees its tenant's records only.
	resp, b = e.callAs(k.Key, "GET", "/api/v1/audit", "")
	if resp.StatusCode != 200 || strings.Contains(string(b), `"POST /api/v1/tenants"`) || !strings.Contains(string(b), "suppressions") {
		t.Errorf("the key's view: %d %s", resp.StatusCode, b)
	}
	resp, b = e.callAs(k.Key, "GET", "/api/v1/audit?tenant=other", "")
	problem(t, resp, b, http.StatusNotFound)
	e.want(200, "GET", "/api/v1/audit?after="+page.Next, "", &page)
	if len(page.Records) != 0 {
		t.Errorf("after the last: %+v", page.Records)
	}
}
