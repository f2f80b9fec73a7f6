package readiness

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/tenant"
)

// TestReadyDomain: a domain whose records are all published is ready;
// every check is ok but the complaint rate, which is not measured yet and
// says so.
func TestReadyDomain(t *testing.T) {
	r := newWorld(t).report(t)
	if !r.Ready || !strings.Contains(r.Summary, "is ready for bulk mail to Gmail and Yahoo") {
		t.Fatalf("not ready: %s\n%+v", r.Summary, r.Checks)
	}
	for _, c := range r.Checks {
		if c.Status != OK && c.Name != "complaint_rate" {
			t.Errorf("%s: %s (%s; %s)", c.Name, c.Status, c.Found, c.Fix)
		}
	}
	want(t, r, "dkim:heed-rsa-1", OK)
	want(t, r, "dkim:heed-ed-1", OK)
	want(t, r, "spf", OK, "v=spf1 a:relay.test ~all", "192.0.2.10: pass (a:relay.test)")
	want(t, r, "spf_return_path", OK, "192.0.2.10: pass")
	want(t, r, "dmarc", OK, "p=reject")
	want(t, r, "dmarc_alignment", OK, "d=acme.test")
	want(t, r, "mx_return_path", OK, "10 relay.test")
	want(t, r, "mx_unsubscribe", OK, "10 relay.test")
	want(t, r, "reverse_dns:192.0.2.10", OK, "relay.test → 192.0.2.10")
	want(t, r, "https", OK, "valid certificate")
	want(t, r, "one_click", OK, "404 Not Found from Heed's public handler")
	want(t, r, "postal_address", OK, "1 Main St")
	want(t, r, "complaint_rate", Warn, "not measured yet")
	// The sending address came from hostname, and the text says so.
	if c := check(t, r, "spf"); !strings.Contains(c.Expected, "hostname relay.test's A/AAAA records") {
		t.Errorf("spf does not say where the addresses came from: %s", c.Expected)
	}
}

// TestDKIMChecks: a missing or different key record fails, and so does a
// domain that signs with Ed25519 alone; a key not active is not checked.
func TestDKIMChecks(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		w := newWorld(t)
		w.dns.Remove(w.subject.Keys[0].Name(), "TXT")
		r := w.report(t)
		want(t, r, "dkim:heed-rsa-1", Fail, "no DKIM record at heed-rsa-1._domainkey.acme.test")
		if r.Ready || !strings.Contains(r.Summary, "dkim:heed-rsa-1") {
			t.Errorf("summary %q", r.Summary)
		}
	})
	t.Run("wrong", func(t *testing.T) {
		w := newWorld(t)
		w.dns.Remove(w.subject.Keys[0].Name(), "TXT")
		w.dns.Set(t, w.subject.Keys[0].Name()+`. TXT "v=DKIM1; k=rsa; p=MIIBstale"`)
		want(t, w.report(t), "dkim:heed-rsa-1", Fail, "p=MIIBstale")
	})
	t.Run("ed25519 alone", func(t *testing.T) {
		w := newWorld(t)
		w.subject.Keys[0].State = tenant.KeyRetired
		w.dns.Remove(w.subject.Keys[0].Name(), "TXT")
		r := w.report(t)
		want(t, r, "dkim_rsa", Fail, "no active RSA key")
		for _, c := range r.Checks {
			if c.Name == "dkim:heed-rsa-1" {
				t.Errorf("a retired key was checked: %+v", c)
			}
		}
	})
}

// TestSPFChecks: no record, a record that does not authorise the relay,
// and a record with two SPF records fail; includes and redirects are
// followed.
func TestSPFChecks(t *testing.T) {
	cases := []struct {
		name    string
		records []string
		status  Status
		found   string
	}{
		{"missing", nil, Fail, "no SPF record at acme.test"},
		{"not authorised", []string{`acme.test. TXT "v=spf1 ip4:198.51.100.0/24 -all"`}, Fail, "192.0.2.10: fail (-all)"},
		{"softfail", []string{`acme.test. TXT "v=spf1 ~all"`}, Fail, "softfail"},
		{"two records", []string{`acme.test. TXT "v=spf1 -all"`, `acme.test. TXT "v=spf1 +all"`}, Fail, "2 SPF records"},
		{"syntax", []string{`acme.test. TXT "v=spf1 ip4:300.1.2.3 -all"`}, Fail, "permerror"},
		{"ip4 network", []string{`acme.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`}, OK, "pass (ip4:192.0.2.0/24)"},
		{"include", []string{`acme.test. TXT "v=spf1 include:_spf.esp.test -all"`,
			`_spf.esp.test. TXT "v=spf1 a:relay.test -all"`}, OK, "pass (include:_spf.esp.test)"},
		{"include without record", []string{`acme.test. TXT "v=spf1 include:nothing.test -all"`}, Fail, "include:nothing.test has no SPF record"},
		{"redirect", []string{`acme.test. TXT "v=spf1 redirect=_spf.esp.test"`,
			`_spf.esp.test. TXT "v=spf1 mx:relay.test/24 -all"`, `relay.test. MX 10 mx.relay.test.`, `mx.relay.test. A 192.0.2.99`}, OK, "pass"},
		{"macro exists", []string{`acme.test. TXT "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"`,
			`10.2.0.192.in-addr._spf.acme.test. A 127.0.0.2`}, OK, "pass (exists:%{ir}.%{v}._spf.%{d})"},
		{"unsupported macro", []string{`acme.test. TXT "v=spf1 exists:%{p}._spf.acme.test -all"`}, Warn, "uses macros Heed does not evaluate"},
		{"void lookups", []string{`acme.test. TXT "v=spf1 a:v1.test a:v2.test a:v3.test ip4:192.0.2.10 -all"`}, Fail, "more than 2 lookups found nothing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.dns.Remove(domain, "TXT")
			w.dns.Set(t, tc.records...)
			want(t, w.report(t), "spf", tc.status, tc.found)
		})
	}
}

// spfChain publishes at acme.test a record that needs n DNS lookups: a
// chain of includes whose last one authorises the relay.
func spfChain(t *testing.T, w *world, n int) {
	w.dns.Remove(domain, "TXT")
	for i := 1; i < n; i++ {
		w.dns.Set(t, fmt.Sprintf(`l%d.acme.test. TXT "v=spf1 include:l%d.acme.test -all"`, i, i+1))
	}
	w.dns.Set(t, `acme.test. TXT "v=spf1 include:l1.acme.test -all"`,
		fmt.Sprintf(`l%d.acme.test. TXT "v=spf1 ip4:%s -all"`, n, source))
}

// TestSPFLookupLimit: RFC 7208 section 4.6.4 allows 10 lookups: a record
// needing 10 passes, one needing 11 fails and says why.
func TestSPFLookupLimit(t *testing.T) {
	w := newWorld(t)
	spfChain(t, w, 10)
	want(t, w.report(t), "spf", OK, "pass", "10 DNS lookups")

	w = newWorld(t)
	spfChain(t, w, 11)
	c := want(t, w.report(t), "spf", Fail, "permerror", "more than 10 DNS lookups")
	if !strings.Contains(c.Fix, "10 lookups") {
		t.Errorf("fix %q", c.Fix)
	}
}

// TestSPFReturnPath: the envelope sender's domain is what receivers check.
func TestSPFReturnPath(t *testing.T) {
	w := newWorld(t)
	w.dns.Remove("bounces.relay.test", "TXT")
	want(t, w.report(t), "spf_return_path", Fail, "no SPF record at bounces.relay.test")
}

// TestConfiguredSources: delivery.source_addresses replaces hostname's
// addresses, and each is checked.
func TestConfiguredSources(t *testing.T) {
	w := newWorld(t)
	w.opts.SourceAddresses = []netip.Addr{addr(source), addr("2001:db8::25")}
	r := w.report(t)
	c := want(t, r, "spf", Fail, "192.0.2.10: pass", "2001:db8::25: softfail")
	if !strings.Contains(c.Expected, "(delivery.source_addresses)") || !strings.Contains(c.Fix, "ip6:2001:db8::25") {
		t.Errorf("spf: expected %q, fix %q", c.Expected, c.Fix)
	}
	want(t, r, "reverse_dns:2001:db8::25", Fail, "no PTR record")
	want(t, r, "reverse_dns:192.0.2.10", OK)
}

// TestDMARCChecks: no record fails, p=none warns with the advice, the
// organizational domain's record covers a subdomain.
func TestDMARCChecks(t *testing.T) {
	w := newWorld(t)
	w.dns.Remove("_dmarc.acme.test", "TXT")
	want(t, w.report(t), "dmarc", Fail, "no DMARC record at _dmarc.acme.test")

	w = newWorld(t)
	w.dns.Remove("_dmarc.acme.test", "TXT")
	w.dns.Set(t, `_dmarc.acme.test. TXT "v=DMARC1; p=none"`)
	c := want(t, w.report(t), "dmarc", Warn, "p=none")
	if !strings.Contains(c.Fix, "p=quarantine") {
		t.Errorf("fix %q", c.Fix)
	}

	w = newWorld(t)
	w.subject.Domain = "mail.acme.test"
	want(t, w.report(t), "dmarc", OK, "_dmarc.acme.test: v=DMARC1; p=reject")
}

// TestMXChecks: the return-path and mailto domains must name the relay.
func TestMXChecks(t *testing.T) {
	w := newWorld(t)
	w.dns.Remove("bounces.relay.test", "MX")
	w.dns.Remove("unsubscribe.relay.test", "MX")
	w.dns.Set(t, `unsubscribe.relay.test. MX 10 mx.elsewhere.test.`)
	r := w.report(t)
	want(t, r, "mx_return_path", Fail, "no MX record at bounces.relay.test")
	c := want(t, r, "mx_unsubscribe", Fail, "10 mx.elsewhere.test")
	if !strings.Contains(c.Fix, "MX 10 relay.test. at unsubscribe.relay.test") {
		t.Errorf("fix %q", c.Fix)
	}
}

// TestReverseDNS: no PTR fails; a PTR whose name does not resolve back
// fails (FCrDNS); a confirmed name other than hostname warns.
func TestReverseDNS(t *testing.T) {
	w := newWorld(t)
	w.dns.Remove(dnstestPTR, "PTR")
	want(t, w.report(t), "reverse_dns:192.0.2.10", Fail, "no PTR record for 192.0.2.10")

	w = newWorld(t)
	w.dns.Remove(dnstestPTR, "PTR")
	w.dns.Set(t, dnstestPTR+` PTR host.isp.test.`, `host.isp.test. A 198.51.100.7`)
	c := want(t, w.report(t), "reverse_dns:192.0.2.10", Fail, "host.isp.test → 198.51.100.7")
	if !strings.Contains(c.Fix, "resolve back") {
		t.Errorf("fix %q", c.Fix)
	}

	w = newWorld(t)
	w.dns.Remove(dnstestPTR, "PTR")
	w.dns.Set(t, dnstestPTR+` PTR host.isp.test.`, `host.isp.test. A `+source)
	r := w.report(t)
	want(t, r, "reverse_dns:192.0.2.10", Warn, "host.isp.test → 192.0.2.10")
	if !r.Ready {
		t.Errorf("a warning made the domain not ready: %s", r.Summary)
	}
}

const dnstestPTR = "10.2.0.192.in-addr.arpa."

// TestHTTPS: an untrusted certificate, plain http, a redirect and a
// server that is not Heed fail the https or one_click check.
func TestHTTPS(t *testing.T) {
	w := newWorld(t)
	w.opts.RootCAs = x509.NewCertPool() // trusts nothing
	r := w.report(t)
	want(t, r, "https", Fail, "certificate not valid")
	want(t, r, "one_click", Fail, "not probed")

	w = newWorld(t)
	w.opts.BaseURL = "http://unsubscribe.relay.test"
	want(t, w.report(t), "https", Fail, "http://unsubscribe.relay.test")

	for name, h := range map[string]http.Handler{
		"redirect": http.RedirectHandler("https://example.test/thanks", http.StatusSeeOther),
		"not heed": notFromHeed,
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			other := httptest.NewTLSServer(h)
			t.Cleanup(other.Close)
			w.opts.RootCAs.AddCert(other.Certificate())
			w.opts.BaseURL = other.URL
			r := w.report(t)
			want(t, r, "https", OK)
			c := want(t, r, "one_click", Fail)
			if name == "redirect" && !strings.Contains(c.Found, "303 See Other to https://example.test/thanks") {
				t.Errorf("found %q", c.Found)
			}
			if name == "not heed" && !strings.Contains(c.Found, "not from Heed's public handler") {
				t.Errorf("found %q", c.Found)
			}
		})
	}
}

// TestLookupFailures: a name server that fails makes warnings that say
// so, not an error of the report, and not a failure of the domain.
func TestLookupFailures(t *testing.T) {
	w := newWorld(t)
	w.dns.Break("_dmarc.acme.test")
	w.dns.Break("bounces.relay.test")
	w.dns.Break(w.subject.Keys[1].Name())
	r := w.report(t)
	want(t, r, "dmarc", Warn, "could not look up")
	want(t, r, "mx_return_path", Warn, "could not look up")
	want(t, r, "spf_return_path", Warn, "temperror")
	want(t, r, "dkim:heed-ed-1", Warn, "could not look up")
	if !r.Ready {
		t.Errorf("lookups that failed made the domain not ready: %s", r.Summary)
	}
}

// TestTenantChecks: no postal address fails; the complaint rate, once
// measured, is judged against Gmail's 0.1% and 0.3% lines.
func TestTenantChecks(t *testing.T) {
	w := newWorld(t)
	w.subject.Tenant.PostalAddress = "  "
	want(t, w.report(t), "postal_address", Fail, "none")

	for _, tc := range []struct {
		complaints int64
		status     Status
	}{{0, OK}, {2, Warn}, {3, Fail}} {
		w := newWorld(t)
		w.opts.ComplaintRate = func(_ context.Context, tn, d string) (Rate, error) {
			if tn != "acme" || d != domain {
				return Rate{}, errors.New("asked about " + tn + " " + d)
			}
			return Rate{Complaints: tc.complaints, Delivered: 1000, Window: 7 * 24 * time.Hour}, nil
		}
		want(t, w.report(t), "complaint_rate", tc.status, fmt.Sprintf("%d complaints in 1000 delivered", tc.complaints))
	}
}
