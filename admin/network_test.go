package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/tenant"
)

// TestIPCredentialLimits: a tenant's read-write key cannot open the relay
// to the internet, nor to more than a /24 or /56; an operator can register
// up to a /8 or /32, never the whole internet; an IPv4-mapped network is
// its IPv4 network, so it cannot slip past another tenant's, and the 409
// names neither that tenant nor its network.
func TestIPCredentialLimits(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"acme", "victim", "third"} {
		e.createTenant(id)
	}
	e.want(201, "POST", "/api/v1/tenants/victim/credentials", `{"kind":"ip","cidr":"198.51.100.0/24"}`, nil)
	k := e.apiKey("acme", "read-write")
	create := func(tok, tenantID, cidr string) (*http.Response, []byte) {
		t.Helper()
		return e.callAs(tok, "POST", "/api/v1/tenants/"+tenantID+"/credentials", `{"kind":"ip","cidr":"`+cidr+`"}`)
	}

	for _, cidr := range []string{"0.0.0.0/0", "::/0", "10.0.0.0/8", "203.0.112.0/23", "2001:db8::/48", "::ffff:0.0.0.0/96", "::ffff:0:0/95", "203.0.113.7/24"} {
		resp, b := create(k.Key, "acme", cidr)
		if p := problem(t, resp, b, http.StatusUnprocessableEntity); p.Type != TypeUnprocessable || p.Detail == "" {
			t.Errorf("tenant key, %s: %+v", cidr, p)
		}
	}
	for cidr, want := range map[string]string{
		"203.0.113.0/24":          "203.0.113.0/24",
		"2001:db8:1::/56":         "2001:db8:1::/56",
		"::ffff:192.0.2.0/120":    "192.0.2.0/24",
		"::ffff:192.0.2.1":        "192.0.2.1/32",
		"2001:db8:2:3::/64":       "2001:db8:2:3::/64",
		"::ffff:203.0.113.16/124": "203.0.113.16/28",
	} {
		resp, b := create(k.Key, "acme", cidr)
		var v credentialView
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &v) != nil || v.CIDR != want {
			t.Errorf("tenant key, %s: %d %s, want 201 with cidr %s", cidr, resp.StatusCode, b, want)
		}
	}

	// The mapped spelling of a network inside the victim's.
	for _, cidr := range []string{"::ffff:198.51.100.64/122", "::ffff:198.51.100.7", "198.51.100.128/25"} {
		resp, b := create(k.Key, "acme", cidr)
		p := problem(t, resp, b, http.StatusConflict)
		if !strings.Contains(p.Detail, "overlaps a network already registered") {
			t.Errorf("%s: %+v", cidr, p)
		}
		for _, secret := range []string{"198.51.100.0", "/24", "victim"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("%s: the 409 reveals %q: %s", cidr, secret, b)
			}
		}
	}

	// Operators: up to a /8 and a /32, never the whole internet.
	for _, cidr := range []string{"0.0.0.0/0", "::/0", "8.0.0.0/7", "2001::/31", "::ffff:0:0/95"} {
		resp, b := create(token, "third", cidr)
		problem(t, resp, b, http.StatusUnprocessableEntity)
	}
	for _, cidr := range []string{"10.0.0.0/8", "2001:db9::/32"} {
		if resp, b := create(token, "third", cidr); resp.StatusCode != http.StatusCreated {
			t.Errorf("operator, %s: %d %s", cidr, resp.StatusCode, b)
		}
	}
	// A network already held blocks only what overlaps it.
	resp, b := create(k.Key, "acme", "2001:db9:1::/56")
	problem(t, resp, b, http.StatusConflict)
	if strings.Contains(string(b), "2001:db9::") || strings.Contains(string(b), "third") {
		t.Errorf("the 409 reveals the operator's network: %s", b)
	}
	if resp, b := create(k.Key, "acme", "2001:db8:3::/56"); resp.StatusCode != http.StatusCreated {
		t.Errorf("an unrelated /56: %d %s", resp.StatusCode, b)
	}
	// A private network is the operator's to register, not a tenant's.
	resp, b = create(k.Key, "acme", "172.16.5.0/24")
	if p := problem(t, resp, b, http.StatusUnprocessableEntity); !strings.Contains(p.Detail, "RFC 1918") {
		t.Errorf("a private /24 with a tenant key: %+v", p)
	}
}

// TestIPCredentialPublicOnly: a tenant's key cannot register the address
// that a proxy, a NAT, a container bridge or the relay itself gives every
// client behind it (as read from the Received field of its own mail), nor
// one no client has: 422 saying why. An operator can register the
// loopback and private ones, for a local app or a private network.
func TestIPCredentialPublicOnly(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	k := e.apiKey("acme", "read-write")
	for _, cidr := range []string{
		"127.0.0.1", "::1", "0.0.0.0/24", "172.17.0.1", "169.254.169.0/24", "fe80::/64",
		"224.0.0.0/24", "::/128", "::/96", "10.0.0.0/24", "192.168.0.1", "100.64.0.0/24", "fd12:3456::/56",
		"::ffff:127.0.0.1", "::ffff:10.1.2.0/120",
	} {
		resp, b := e.callAs(k.Key, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"`+cidr+`"}`)
		if p := problem(t, resp, b, http.StatusUnprocessableEntity); p.Type != TypeUnprocessable || !strings.Contains(p.Detail, "RFC") {
			t.Errorf("tenant key, %s: %+v", cidr, p)
		}
	}
	for _, cidr := range []string{"127.0.0.1", "::1", "172.17.0.0/16", "10.0.0.0/8", "fd12:3456::/48"} {
		if resp, b := e.call("POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"`+cidr+`"}`); resp.StatusCode != http.StatusCreated {
			t.Errorf("operator, %s: %d %s", cidr, resp.StatusCode, b)
		}
	}
	resp, b := e.call("POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"224.0.0.0/24"}`)
	problem(t, resp, b, http.StatusUnprocessableEntity)
}

// TestIPCredentialCapAPI: a tenant's key registers at most
// tenant.MaxTenantIPCredentials networks, then gets 422 saying so; an
// operator can still register one for the tenant, and a deletion makes
// room again.
func TestIPCredentialCapAPI(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	k := e.apiKey("acme", "read-write")
	var last credentialView
	for i := range tenant.MaxTenantIPCredentials {
		resp, b := e.callAs(k.Key, "POST", "/api/v1/tenants/acme/credentials", fmt.Sprintf(`{"kind":"ip","cidr":"203.0.113.%d"}`, i))
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &last) != nil {
			t.Fatalf("network %d: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, b := e.callAs(k.Key, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"198.51.100.0/24"}`)
	if p := problem(t, resp, b, http.StatusUnprocessableEntity); !strings.Contains(p.Detail, fmt.Sprint(tenant.MaxTenantIPCredentials)) {
		t.Errorf("one network too many: %+v", p)
	}
	e.want(201, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"192.0.2.0/24"}`, nil)
	e.want(204, "DELETE", "/api/v1/tenants/acme/credentials/"+last.ID, "", nil)
	resp, b = e.callAs(k.Key, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"198.51.100.0/24"}`)
	problem(t, resp, b, http.StatusUnprocessableEntity) // 16 still, with the operator's
	e.want(204, "DELETE", "/api/v1/tenants/acme/credentials/"+firstIP(t, e), "", nil)
	if resp, b := e.callAs(k.Key, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"198.51.100.0/24"}`); resp.StatusCode != http.StatusCreated {
		t.Errorf("after deleting two: %d %s", resp.StatusCode, b)
	}
}

// firstIP is the id of the first ip credential acme lists.
func firstIP(t *testing.T, e *env) string {
	t.Helper()
	var l struct{ Credentials []credentialView }
	e.want(200, "GET", "/api/v1/tenants/acme/credentials", "", &l)
	for _, c := range l.Credentials {
		if c.Kind == tenant.KindIP {
			return c.ID
		}
	}
	t.Fatal("acme has no ip credential")
	return ""
}

// TestOverlapRefusalAudited: the 409 that tells a key holder a network is
// another tenant's is kept in the audit log, under the asking tenant, with
// its status and the key that asked, so an operator sees probing.
func TestOverlapRefusalAudited(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("victim")
	e.want(201, "POST", "/api/v1/tenants/victim/credentials", `{"kind":"ip","cidr":"198.51.100.0/24"}`, nil)
	k := e.apiKey("acme", "read-write")
	for _, cidr := range []string{"198.51.100.0/25", "198.51.100.0/26"} {
		resp, b := e.callAs(k.Key, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"`+cidr+`"}`)
		problem(t, resp, b, http.StatusConflict)
	}
	var page struct{ Records []AuditRecord }
	e.want(200, "GET", "/api/v1/audit?tenant=acme", "", &page)
	n := 0
	for _, r := range page.Records {
		if r.Status == http.StatusConflict {
			n++
			if r.Actor != "api_key:"+k.ID || r.Action != "POST /api/v1/tenants/:tenant/credentials" {
				t.Errorf("the refusal's record: %+v", r)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d refusals in the audit log of acme, want 2: %+v", n, page.Records)
	}
}
