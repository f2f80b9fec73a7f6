package readiness

import (
	"context"
	"fmt"
	"strings"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/tenant"
	"golang.org/x/net/publicsuffix"
)

// Record statuses of checkRecord.
const (
	RecordOK        = "ok"        // published as advised
	RecordMissing   = "missing"   // no record of that purpose at the name
	RecordDifferent = "different" // one of that purpose, with another value
	RecordError     = "error"     // the lookup failed: try again
)

// RecordResult is what the DNS holds at one advised record's name.
type RecordResult struct {
	Status string
	// Found are the TXT values of the record's purpose at the name.
	Found []string
	// Err is the failed lookup's, when Status is RecordError.
	Err error
}

// checkRecord looks up the TXT record advised at name for purpose (spf,
// dmarc or dkim) and compares it with want. The admin API's DNS check of a
// domain and the readiness report's DKIM checks both use it. Resolvers
// return the strings of a TXT record joined, as RFC 7208 and RFC 6376 read
// them.
func checkRecord(ctx context.Context, lookupTXT func(context.Context, string) ([]string, error), name, purpose, want string) RecordResult {
	res := RecordResult{Status: RecordMissing}
	txts, err := lookupTXT(ctx, name)
	if err != nil && !notFound(err) {
		res.Status, res.Err = RecordError, err
	}
	for _, v := range txts {
		if !samePurpose(purpose, v) {
			continue
		}
		res.Found = append(res.Found, v)
		if res.Status != RecordOK {
			res.Status = RecordDifferent
		}
		if sameRecord(want, v) {
			res.Status = RecordOK
		}
	}
	return res
}

// samePurpose tells which TXT values at a name are the SPF, DMARC or DKIM
// record (other TXT records live at a domain's apex too).
func samePurpose(purpose, v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	switch purpose {
	case "spf":
		return strings.HasPrefix(v, "v=spf1")
	case "dmarc":
		return strings.HasPrefix(v, "v=dmarc1")
	default:
		return strings.HasPrefix(v, "v=dkim1") || strings.Contains(v, "p=")
	}
}

// sameRecord compares ignoring the whitespace DNS consoles add or drop.
func sameRecord(want, got string) bool {
	return strings.Join(strings.Fields(want), "") == strings.Join(strings.Fields(got), "")
}

// dkimChecks: one check per active key (RFC 6376 section 3.6.2.1: the
// record at selector._domainkey.domain), and one that an RSA key signs.
func (c *Checker) dkimChecks(ctx context.Context, s Subject) []Check {
	var out []Check
	rsa := false
	for _, k := range s.Keys {
		if k.State != tenant.KeyActive {
			continue
		}
		rsa = rsa || k.Algorithm == string(dkim.RSA)
		out = append(out, c.dkimKeyCheck(ctx, s, k))
	}
	ch := Check{Name: "dkim_rsa", Status: OK, Found: "an active RSA key",
		Expected: "an active RSA key (Ed25519 signatures alone are not verified by the large providers)"}
	if !rsa {
		ch.Status, ch.Found = Fail, "no active RSA key"
		ch.Fix = "Add an RSA key (POST /api/v1/tenants/" + s.Tenant.ID + "/domains/" + s.Domain +
			`/keys {"algorithm":"rsa"}), publish its record, then activate it.`
	}
	return append(out, ch)
}

func (c *Checker) dkimKeyCheck(ctx context.Context, s Subject, k tenant.DKIMKey) Check {
	name := "dkim:" + k.Selector
	res := checkRecord(ctx, func(ctx context.Context, n string) ([]string, error) {
		return c.o.Resolver.LookupTXT(ctx, fqdn(n))
	}, k.Name(), "dkim", k.TXT)
	ch := Check{Name: name, Found: strings.Join(res.Found, " | "), Expected: k.Name() + " TXT " + k.TXT}
	switch res.Status {
	case RecordOK:
		ch.Status = OK
	case RecordError:
		ch = couldNotLookUp(name, res.Err)
		ch.Expected = k.Name() + " TXT " + k.TXT
	case RecordMissing:
		ch.Status, ch.Found = Fail, "no DKIM record at "+k.Name()
		ch.Fix = "Publish the TXT record expected at " + k.Name() + ": without it no receiver can verify the " + k.Algorithm + " signature."
	default:
		ch.Status = Fail
		ch.Fix = "Replace the TXT record at " + k.Name() + " with the one expected: the published key is not the one Heed signs with."
	}
	return ch
}

// dmarcChecks: the policy record (RFC 7489 section 6.6.3: at _dmarc of
// the From: domain, else of its organizational domain) and the alignment
// of DKIM's d= with From:.
func (c *Checker) dmarcChecks(ctx context.Context, domain string) []Check {
	align := Check{Name: "dmarc_alignment", Status: OK,
		Found:    fmt.Sprintf("DKIM d=%s, From: @%s", domain, domain),
		Expected: "DKIM d= aligned with the From: domain (RFC 7489 section 3.1.1)",
		Fix:      "Nothing to do: Heed signs with d= the From: domain, so DMARC passes on DKIM.",
	}
	return []Check{c.dmarcPolicy(ctx, domain), align}
}

func (c *Checker) dmarcPolicy(ctx context.Context, domain string) Check {
	const name = "dmarc"
	expected := "a TXT record at _dmarc." + domain + " with p=quarantine or p=reject (p=none is the start)"
	at := "_dmarc." + domain
	recs, err := c.dmarcRecords(ctx, at)
	if err == nil && len(recs) == 0 {
		// The organizational domain's policy covers its subdomains.
		if org, oerr := publicsuffix.EffectiveTLDPlusOne(domain); oerr == nil && org != bare(domain) {
			at = "_dmarc." + org
			recs, err = c.dmarcRecords(ctx, at)
		}
	}
	if err != nil {
		ch := couldNotLookUp(name, err)
		ch.Expected = expected
		return ch
	}
	ch := Check{Name: name, Expected: expected, Found: strings.Join(recs, " | ")}
	switch {
	case len(recs) == 0:
		ch.Status, ch.Found = Fail, "no DMARC record at _dmarc."+domain
		ch.Fix = "Publish TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@" + domain + "\" at _dmarc." + domain + ": Gmail and Yahoo require a DMARC record of bulk senders."
		return ch
	case len(recs) > 1:
		ch.Status = Fail
		ch.Fix = "Keep one DMARC record at " + at + ": with several, receivers apply none (RFC 7489 section 6.6.3)."
		return ch
	}
	ch.Found = at + ": " + recs[0]
	switch p := dmarcTag(recs[0], "p"); p {
	case "quarantine", "reject":
		ch.Status = OK
	case "none":
		ch.Status = Warn
		ch.Fix = "p=none only monitors: once the aggregate reports show all your mail passing, move to p=quarantine, then p=reject."
	default:
		ch.Status = Fail
		ch.Fix = "Give the record a policy, p=none, p=quarantine or p=reject: a record without a valid p= is ignored (RFC 7489 section 6.3)."
	}
	return ch
}

// dmarcRecords returns the DMARC records at name; none is no error.
func (c *Checker) dmarcRecords(ctx context.Context, name string) ([]string, error) {
	txts, err := c.o.Resolver.LookupTXT(ctx, fqdn(name))
	if err != nil && !notFound(err) {
		return nil, err
	}
	var out []string
	for _, t := range txts {
		if samePurpose("dmarc", t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// dmarcTag is the value of tag in a DMARC record, lower case.
func dmarcTag(rec, tag string) string {
	for part := range strings.SplitSeq(rec, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), tag) {
			return strings.ToLower(strings.TrimSpace(v))
		}
	}
	return ""
}
