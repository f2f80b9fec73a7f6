package admin

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/dnstest"
	"github.com/heedmail/heed/internal/readiness"
)

// readinessEnv is an admin API whose readiness reports ask a DNS server
// on loopback; base_url is plain http, so the https check fails in every
// report (the checks themselves are package readiness's to test).
func readinessEnv(t *testing.T) (*env, *dnstest.Server) {
	t.Helper()
	dns := dnstest.Start(t, `relay.example.com. A 192.0.2.10`)
	e := newEnvWith(t, func(o *Options) {
		o.Readiness = readiness.New(readiness.Options{
			Resolver: readiness.NewResolver(dns.Addr), Hostname: "relay.example.com",
			ReturnPathDomain: "bounces.relay.example.com", MailtoDomain: "unsubscribe.relay.example.com",
			BaseURL: "http://127.0.0.1:1", Timeout: 10 * time.Second,
		})
	})
	return e, dns
}

// publishDKIM puts the domain's advised DKIM records in the DNS.
func publishDKIM(t *testing.T, dns *dnstest.Server, d domainResp) {
	t.Helper()
	for _, r := range d.DNSRecords {
		if r.Purpose != "dkim" {
			continue
		}
		parts := dkim.SplitTXT(r.Value)
		if len(parts) == 0 {
			parts = []string{r.Value}
		}
		for i, p := range parts {
			parts[i] = strconv.Quote(p)
		}
		dns.Set(t, r.Name+". TXT "+strings.Join(parts, " "))
	}
}

// TestReadinessAPI: a tenant's key reads the report of its own domain,
// whose DKIM records are checked against the DNS; another tenant's domain
// is 404 by either path; a DNS that fails is a warning in a 200.
func TestReadinessAPI(t *testing.T) {
	e, dns := readinessEnv(t)
	e.createTenant("acme")
	e.createTenant("rival")
	var d domainResp
	e.want(201, "POST", "/api/v1/tenants/acme/domains", `{"domain":"acme.test"}`, &d)
	e.want(201, "POST", "/api/v1/tenants/rival/domains", `{"domain":"rival.test"}`, nil)
	publishDKIM(t, dns, d)
	key := e.apiKey("acme", "read-only")

	resp, b := e.callAs(key.Key, "GET", "/api/v1/tenants/acme/domains/acme.test/readiness", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var r readiness.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	status := map[string]readiness.Status{}
	for _, c := range r.Checks {
		status[c.Name] = c.Status
	}
	dkimOK := 0
	for _, k := range d.Keys {
		if status["dkim:"+k.Selector] == readiness.OK {
			dkimOK++
		}
	}
	if r.Domain != "acme.test" || r.Ready || dkimOK != len(d.Keys) || len(d.Keys) == 0 ||
		status["dkim_rsa"] != readiness.OK || status["spf"] != readiness.Fail || status["https"] != readiness.Fail ||
		!strings.Contains(r.Summary, "not ready for bulk mail to Gmail and Yahoo") {
		t.Errorf("report: %s\n%s", r.Summary, b)
	}
	for _, raw := range []string{`"name"`, `"status"`, `"found"`, `"expected"`, `"fix"`, `"ready"`, `"summary"`} {
		if !strings.Contains(string(b), raw) {
			t.Errorf("no %s in %s", raw, b)
		}
	}

	// Another tenant's domain, through its path or through one's own.
	for _, path := range []string{"/api/v1/tenants/rival/domains/rival.test/readiness", "/api/v1/tenants/acme/domains/rival.test/readiness"} {
		resp, b := e.callAs(key.Key, "GET", path, "")
		p := problem(t, resp, b, 404)
		if strings.Contains(string(b), "dkim") {
			t.Errorf("%s: the problem tells something of the domain: %+v", path, p)
		}
	}
	e.want(200, "GET", "/api/v1/tenants/rival/domains/rival.test/readiness", "", nil) // the operator's

	// A name server that fails: warnings, not a 500.
	for _, k := range d.Keys {
		dns.Break(k.DNSRecord.Name)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/domains/acme.test/readiness", "", &r)
	for _, c := range r.Checks {
		if strings.HasPrefix(c.Name, "dkim:") && (c.Status != readiness.Warn || !strings.Contains(c.Found, "could not look up")) {
			t.Errorf("%s with its lookup failing: %+v", c.Name, c)
		}
	}
}
