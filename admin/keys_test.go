package admin

import (
	"fmt"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/dkim"
)

// checkDomainRecords: a new domain has an active RSA and an active
// Ed25519 key, each with its DKIM record, then the SPF and DMARC advice;
// the private key is never shown.
func checkDomainRecords(t *testing.T, d domainResp) {
	t.Helper()
	if len(d.Keys) != 2 || d.Keys[0].Algorithm != string(dkim.RSA) || d.Keys[1].Algorithm != string(dkim.Ed25519) {
		t.Fatalf("keys %+v, want RSA and Ed25519", d.Keys)
	}
	if len(d.DNSRecords) != 4 {
		t.Fatalf("dns_records %+v, want 2 DKIM, SPF and DMARC", d.DNSRecords)
	}
	for i, k := range d.Keys {
		r := d.DNSRecords[i]
		if k.State != "active" || r.Purpose != "dkim" || r.Name != k.Selector+"._domainkey."+d.Domain || r.Value != k.DNSRecord.Value {
			t.Errorf("key %+v record %+v", k, r)
		}
	}
	if !strings.HasPrefix(d.DNSRecords[0].Value, "v=DKIM1; k=rsa; p=") || len(d.DNSRecords[0].Strings) < 2 {
		t.Errorf("RSA record %+v, want k=rsa cut into ≤255-octet strings", d.DNSRecords[0])
	}
	for _, s := range d.DNSRecords[0].Strings {
		if len(s) > 255 {
			t.Errorf("a TXT string of %d octets", len(s))
		}
	}
	if !strings.HasPrefix(d.DNSRecords[1].Value, "v=DKIM1; k=ed25519; p=") {
		t.Errorf("Ed25519 record %+v", d.DNSRecords[1])
	}
	want := []DNSRecord{
		{Type: "TXT", Name: d.Domain, Value: "v=spf1 a:relay.example.com ~all", Purpose: "spf"},
		{Type: "TXT", Name: "_dmarc." + d.Domain, Value: "v=DMARC1; p=none; rua=mailto:dmarc-reports@" + d.Domain, Purpose: "dmarc"},
	}
	if fmt.Sprint(d.DNSRecords[2:]) != fmt.Sprint(want) {
		t.Errorf("advice %+v, want %+v", d.DNSRecords[2:], want)
	}
}

// TestDNSCheck: GET of a domain says, per record, whether the DNS holds
// it as advised.
func TestDNSCheck(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	var d domainResp
	e.want(201, "POST", "/api/v1/tenants/acme/domains", `{"domain":"mail.example.com"}`, &d)
	rsa := d.DNSRecords[0]
	// Published as a DNS console does: in 255-octet strings, which the
	// resolver joins; SPF with an include of its own.
	e.publish(rsa.Name, strings.Join(rsa.Strings, ""))
	e.publish("mail.example.com", "google-site-verification=abc", "v=spf1 include:_spf.example.net ~all")
	e.want(200, "GET", "/api/v1/tenants/acme/domains/mail.example.com", "", &d)
	got := map[string]string{}
	for _, r := range d.DNSCheck.Records {
		got[r.Purpose+" "+r.Selector] = r.Status
	}
	want := map[string]string{
		"dkim " + d.Keys[0].Selector: "ok", "dkim " + d.Keys[1].Selector: "missing",
		"spf ": "different", "dmarc ": "missing",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dns_check %v, want %v", got, want)
	}
}

// TestKeyRotation walks the rotation the API offers: a new key is
// published (and signs nothing), activation waits for its DNS record,
// the old key is retired but keeps its record, and only a key that no
// longer signs can be deleted.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	var d domainResp
	e.want(201, "POST", "/api/v1/tenants/acme/domains", `{"domain":"mail.example.com"}`, &d)
	old := d.Keys[0]
	base := "/api/v1/tenants/acme/domains/mail.example.com/keys"

	var k keyView
	e.want(201, "POST", base, `{"algorithm":"rsa"}`, &k)
	if k.State != "published" || k.Selector == old.Selector || k.DNSRecord.Purpose != "dkim" {
		t.Fatalf("new key %+v", k)
	}
	e.wantProblem(400, "POST", base, `{"algorithm":"dsa"}`)
	e.wantProblem(404, "POST", "/api/v1/tenants/other/domains/mail.example.com/keys", `{"algorithm":"rsa"}`)
	e.wantProblem(404, "POST", "/api/v1/tenants/other/domains/mail.example.com/keys/"+k.Selector+"/activate", "")
	e.wantProblem(404, "GET", "/api/v1/tenants/other/domains/mail.example.com/keys/"+k.Selector, "")
	e.wantProblem(404, "DELETE", "/api/v1/tenants/other/domains/mail.example.com/keys/"+k.Selector, "")

	// Not in the DNS yet: activation refused, with what to do.
	p := e.wantProblem(409, "POST", base+"/"+k.Selector+"/activate", "")
	if !strings.Contains(p.Detail, k.DNSRecord.Name) {
		t.Errorf("409 %q does not name the record to publish", p.Detail)
	}
	e.publish(k.DNSRecord.Name, k.DNSRecord.Value)
	e.want(200, "POST", base+"/"+k.Selector+"/activate", "", &k)
	if k.State != "active" || k.ActivatedAt.IsZero() {
		t.Errorf("activated key %+v", k)
	}
	keys, err := e.reg.SigningKeys(t.Context(), "mail.example.com")
	if err != nil || len(keys) != 2 || keys[0].Selector != k.Selector {
		t.Fatalf("signing keys %+v %v, want the new RSA key first", keys, err)
	}

	e.want(200, "GET", "/api/v1/tenants/acme/domains/mail.example.com", "", &d)
	states := map[string]string{}
	for _, v := range d.Keys {
		states[v.Selector] = v.State
	}
	if states[old.Selector] != "retired" || len(d.DNSRecords) != 5 {
		t.Errorf("after rotation: states %v, %d records (the retired key's stays published)", states, len(d.DNSRecords))
	}
	e.wantProblem(409, "DELETE", base+"/"+k.Selector, "")
	e.want(204, "DELETE", base+"/"+old.Selector, "", nil)
	e.wantProblem(404, "GET", base+"/"+old.Selector, "")

	// An Ed25519 key activated with force, without a DNS check.
	var ed keyView
	e.want(201, "POST", base, `{"algorithm":"ed25519"}`, &ed)
	e.want(200, "POST", base+"/"+ed.Selector+"/activate", `{"force":true}`, &ed)
	if ed.State != "active" {
		t.Errorf("forced activation: %+v", ed)
	}
}
