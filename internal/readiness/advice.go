package readiness

import (
	"context"
	"time"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/tenant"
)

// The DNS records Heed advises a sending domain to publish, and the check
// of what the DNS holds for them: one function for the admin API's
// domain answers and the console's Domains page.

// DNSRecord is a record the operator of a sending domain should publish.
type DNSRecord struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Value string `json:"value"`
	// Strings is Value cut into the at most 255-octet character-strings a
	// TXT record is made of (RFC 1035 section 3.3.14), for DNS consoles
	// that want them one by one; only for values longer than 255.
	Strings []string `json:"strings,omitempty"`
	Purpose string   `json:"purpose"`
	// Selector names the DKIM key the record publishes.
	Selector string `json:"selector,omitempty"`
}

// DKIMRecord is the TXT record that publishes k (RFC 6376 section
// 3.6.2.1: at selector._domainkey.domain).
func DKIMRecord(k tenant.DKIMKey) DNSRecord {
	r := DNSRecord{Type: "TXT", Name: k.Name(), Value: k.TXT, Purpose: "dkim", Selector: k.Selector}
	if len(k.TXT) > 255 {
		r.Strings = dkim.SplitTXT(k.TXT)
	}
	return r
}

// Advice is the records d should publish: one DKIM record per key (a
// retired key's stays until the key is deleted, so mail signed with it
// still verifies), then SPF advice naming hostname (none without it) and
// DMARC advice.
func Advice(d tenant.Domain, keys []tenant.DKIMKey, hostname string) []DNSRecord {
	var out []DNSRecord
	for _, k := range keys {
		out = append(out, DKIMRecord(k))
	}
	if hostname != "" {
		out = append(out, DNSRecord{
			Type: "TXT", Name: d.Name, Value: "v=spf1 a:" + hostname + " ~all", Purpose: "spf",
		})
	}
	return append(out, DNSRecord{
		Type: "TXT", Name: "_dmarc." + d.Name,
		Value:   "v=DMARC1; p=none; rua=mailto:dmarc-reports@" + d.Name,
		Purpose: "dmarc",
	})
}

// DNSCheck is what the DNS held for a domain's records when asked.
type DNSCheck struct {
	CheckedAt time.Time        `json:"checked_at"`
	Records   []DNSCheckResult `json:"records"`
}

// DNSCheckResult is one record's status: "ok" (published as advised),
// "missing" (no such record), "different" (a record of that purpose with
// another value: fine for SPF and DMARC if deliberate, never for DKIM) or
// "error" (the lookup failed; try again).
type DNSCheckResult struct {
	Name     string   `json:"name"`
	Purpose  string   `json:"purpose"`
	Selector string   `json:"selector,omitempty"`
	Status   string   `json:"status"`
	Found    []string `json:"found,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// CheckDNS looks each advised record up, within 10 seconds for all, with
// the comparison the report's DKIM checks use too (checkRecord); now is
// the check's time.
func CheckDNS(ctx context.Context, lookupTXT func(context.Context, string) ([]string, error), now time.Time, recs []DNSRecord) *DNSCheck {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out := &DNSCheck{CheckedAt: now, Records: []DNSCheckResult{}}
	for _, r := range recs {
		got := checkRecord(ctx, lookupTXT, r.Name, r.Purpose, r.Value)
		res := DNSCheckResult{Name: r.Name, Purpose: r.Purpose, Selector: r.Selector, Status: got.Status, Found: got.Found}
		if got.Err != nil {
			res.Error = got.Err.Error()
		}
		out.Records = append(out.Records, res)
	}
	return out
}

// Published reports whether k's record is in the DNS as advised, and if
// not why: the status, or the lookup's error. Activating a key whose
// record is not published would make its signatures fail.
func Published(ctx context.Context, lookupTXT func(context.Context, string) ([]string, error), now time.Time, k tenant.DKIMKey) (bool, string) {
	res := CheckDNS(ctx, lookupTXT, now, []DNSRecord{DKIMRecord(k)}).Records[0]
	if res.Status == RecordOK {
		return true, ""
	}
	if res.Error != "" {
		return false, res.Error
	}
	return false, res.Status
}
