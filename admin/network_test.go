package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
	resp, b := create(k.Key, "acme", "10.1.2.0/24")
	problem(t, resp, b, http.StatusConflict)
	if strings.Contains(string(b), "10.0.0.0") || strings.Contains(string(b), "third") {
		t.Errorf("the 409 reveals the operator's network: %s", b)
	}
	if resp, b := create(k.Key, "acme", "172.16.5.0/24"); resp.StatusCode != http.StatusCreated {
		t.Errorf("an unrelated /24: %d %s", resp.StatusCode, b)
	}
}
