package readiness

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/dnstest"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/public"
	"github.com/heedmail/heed/suppression"
)

// The world of the tests: tenant acme sends from acme.test through
// relay.test at 192.0.2.10; bounces go to bounces.relay.test, mailto
// unsubscribes to unsubscribe.relay.test.
const (
	domain   = "acme.test"
	hostname = "relay.test"
	source   = "192.0.2.10"
)

// world is a loopback DNS server holding a ready domain's records and
// Heed's public handler behind HTTPS; tests break one part at a time.
type world struct {
	dns     *dnstest.Server
	https   *httptest.Server
	opts    Options
	subject Subject
}

// txt quotes value as a zone file's TXT data, in strings of at most 255.
func txt(value string) string {
	parts := dkim.SplitTXT(value)
	if len(parts) == 0 {
		parts = []string{value}
	}
	for i, p := range parts {
		parts[i] = strconv.Quote(p)
	}
	return strings.Join(parts, " ")
}

// testKey is a DKIM key as the registry keeps it, for its public record.
func testKey(t *testing.T, alg dkim.Algorithm, selector string) tenant.DKIMKey {
	t.Helper()
	k, err := dkim.Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.TXTRecord(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return tenant.DKIMKey{Domain: domain, Selector: selector, Algorithm: string(alg), State: tenant.KeyActive, TXT: rec}
}

var (
	rsaKey = func(t *testing.T) tenant.DKIMKey { return testKey(t, dkim.RSA, "heed-rsa-1") }
	edKey  = func(t *testing.T) tenant.DKIMKey { return testKey(t, dkim.Ed25519, "heed-ed-1") }
)

// newWorld is a domain that is ready in every respect.
func newWorld(t *testing.T) *world {
	t.Helper()
	keys := []tenant.DKIMKey{rsaKey(t), edKey(t)}
	w := &world{subject: Subject{
		Tenant: tenant.Tenant{ID: "acme", Name: "Acme", PostalAddress: "1 Main St, Springfield"},
		Domain: domain, Keys: keys,
	}}
	w.dns = dnstest.Start(t,
		keys[0].Name()+". TXT "+txt(keys[0].TXT),
		keys[1].Name()+". TXT "+txt(keys[1].TXT),
		`acme.test. TXT "v=spf1 a:relay.test ~all"`,
		`acme.test. TXT "google-site-verification=abc"`,
		`_dmarc.acme.test. TXT "v=DMARC1; p=reject; rua=mailto:d@acme.test"`,
		`relay.test. A `+source,
		`bounces.relay.test. TXT "v=spf1 a:relay.test -all"`,
		`bounces.relay.test. MX 10 relay.test.`,
		`unsubscribe.relay.test. MX 10 relay.test.`,
		dnstest.PTR(source)+` PTR relay.test.`,
	)
	key := make([]byte, 32)
	handler := public.New(public.Options{
		OptOut: &suppression.OptOut{Keys: suppression.NewKeyring(1, map[byte][]byte{1: key})},
	})
	w.https = httptest.NewTLSServer(handler)
	t.Cleanup(w.https.Close)
	pool := x509.NewCertPool()
	pool.AddCert(w.https.Certificate())
	w.opts = Options{
		Resolver: NewResolver(w.dns.Addr),
		Hostname: hostname, ReturnPathDomain: "bounces." + hostname, MailtoDomain: "unsubscribe." + hostname,
		BaseURL: w.https.URL, RootCAs: pool, Timeout: 10 * time.Second,
	}
	return w
}

func (w *world) report(t *testing.T) *Report {
	t.Helper()
	r, err := New(w.opts).Report(context.Background(), w.subject)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// check returns the report's check called name.
func check(t *testing.T, r *Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

// want fails unless the check has status st and its found text holds
// every part.
func want(t *testing.T, r *Report, name string, st Status, found ...string) Check {
	t.Helper()
	c := check(t, r, name)
	if c.Status != st {
		t.Errorf("%s: status %s, want %s\n  found: %s\n  fix: %s", name, c.Status, st, c.Found, c.Fix)
	}
	for _, f := range found {
		if !strings.Contains(c.Found, f) {
			t.Errorf("%s: found %q lacks %q", name, c.Found, f)
		}
	}
	if c.Status != OK && c.Fix == "" {
		t.Errorf("%s: %s without a fix", name, c.Status)
	}
	return c
}

// notFromHeed is a server that answers 404 to everything, as a web site
// base_url might point at by mistake does.
var notFromHeed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })

var addr = netip.MustParseAddr
