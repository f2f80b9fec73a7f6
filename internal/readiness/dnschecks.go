package readiness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// spfChecks evaluate the SPF of the From: domain (spf) and of the
// return-path domain (spf_return_path). Receivers check the envelope
// sender's, which is the return-path domain's; the From: domain's record
// is what the admin API advises and what some receivers look at too.
func (c *Checker) spfChecks(ctx context.Context, domain string, src sourceSet) []Check {
	return []Check{
		c.spfCheck(ctx, "spf", domain, src),
		c.spfCheck(ctx, "spf_return_path", c.o.ReturnPathDomain, src),
	}
}

// spfAdvice is the mechanism that authorises src.
func (c *Checker) spfAdvice(src sourceSet) string {
	if src.derived {
		return "a:" + c.o.Hostname
	}
	terms := make([]string, len(src.addrs))
	for i, a := range src.addrs {
		kind := "ip4:"
		if a.Is6() {
			kind = "ip6:"
		}
		terms[i] = kind + a.String()
	}
	return strings.Join(terms, " ")
}

func (c *Checker) spfCheck(ctx context.Context, name, domain string, src sourceSet) Check {
	advice := c.spfAdvice(src)
	ch := Check{Name: name, Expected: fmt.Sprintf("SPF of %s passes for %s within %d DNS lookups, as \"v=spf1 %s ~all\" does",
		domain, src.describe(c.o.Hostname), maxLookups, advice)}
	if src.problem != "" {
		ch.Status, ch.Found = Fail, src.problem
		ch.Fix = "Set delivery.source_addresses to the public addresses mail leaves from, or publish A/AAAA records for hostname."
		if !strings.HasPrefix(src.problem, "delivery.source_addresses is empty") {
			ch.Status = Warn
		}
		return ch
	}
	ch.Status = OK
	var results []string
	for _, ip := range src.addrs {
		e := &spfEval{ctx: ctx, r: c.o.Resolver, ip: ip, sender: "postmaster@" + domain, helo: c.o.Hostname}
		res := e.checkHost(domain, 0)
		results = append(results, describeSPF(ip, res, e))
		st, fix := spfVerdict(res, e, domain, advice)
		if worse(st, ch.Status) {
			ch.Status, ch.Fix = st, fix
		}
		if e.top != "" && !strings.Contains(ch.Found, e.top) {
			ch.Found = e.top
		}
	}
	if ch.Found == "" {
		ch.Found = "no SPF record at " + domain
	}
	ch.Found += "; " + strings.Join(results, "; ")
	return ch
}

// describeSPF says what check_host() gave one address and why.
func describeSPF(ip netip.Addr, res spfResult, e *spfEval) string {
	s := fmt.Sprintf("%s: %s", ip, res)
	switch {
	case e.matched != "":
		s += " (" + e.matched + ")"
	case e.trouble != nil:
		s += " (" + e.trouble.Error() + ")"
	}
	return s + fmt.Sprintf(", %d DNS %s", e.lookups, plural(e.lookups, "lookup", "lookups"))
}

// spfVerdict maps a check_host() result to a status and a fix.
func spfVerdict(res spfResult, e *spfEval, domain, advice string) (Status, string) {
	switch res {
	case spfPass:
		return OK, ""
	case spfNone:
		return Fail, fmt.Sprintf("Publish TXT \"v=spf1 %s ~all\" at %s: Gmail and Yahoo require SPF of bulk senders.", advice, domain)
	case spfTempError:
		if errors.Is(e.trouble, errUnsupported) {
			return Warn, "Heed could not evaluate the record (it uses macros Heed does not evaluate); check that it authorises the addresses with another SPF checker."
		}
		return Warn, "Try again; if it persists, check that the name servers of the record's domains answer."
	case spfPermError:
		if e.lookups > maxLookups {
			return Fail, "Replace includes with ip4:/ip6: ranges or drop unused ones: receivers treat a record needing more than 10 lookups as an error (RFC 7208 section 4.6.4)."
		}
		return Fail, "Correct the SPF record of " + domain + ": receivers treat it as an error (" + e.trouble.Error() + ")."
	}
	return Fail, fmt.Sprintf("Add %s to the SPF record of %s before its all: it does not authorise the relay.", advice, domain)
}

// worse orders the statuses: fail over warn over ok.
func worse(a, b Status) bool {
	rank := map[Status]int{OK: 0, Warn: 1, Fail: 2}
	return rank[a] > rank[b]
}

// mxChecks: the return-path and mailto unsubscribe domains must send
// their mail (bounces, complaints, unsubscribe mail) to the relay.
func (c *Checker) mxChecks(ctx context.Context) []Check {
	return []Check{
		c.mxCheck(ctx, "mx_return_path", c.o.ReturnPathDomain, "bounces and complaints"),
		c.mxCheck(ctx, "mx_unsubscribe", c.o.MailtoDomain, "mailto: unsubscribe requests"),
	}
}

func (c *Checker) mxCheck(ctx context.Context, name, domain, what string) Check {
	expected := fmt.Sprintf("MX of %s → %s (the relay's inbound listener)", domain, c.o.Hostname)
	mxs, err := c.o.Resolver.LookupMX(ctx, fqdn(domain))
	if err != nil && !notFound(err) && len(mxs) == 0 {
		ch := couldNotLookUp(name, err)
		ch.Expected = expected
		return ch
	}
	ch := Check{Name: name, Status: Fail, Expected: expected}
	var found []string
	for _, mx := range mxs {
		found = append(found, fmt.Sprintf("%d %s", mx.Pref, bare(mx.Host)))
		if bare(mx.Host) == bare(c.o.Hostname) {
			ch.Status = OK
		}
	}
	ch.Found = "MX of " + domain + ": " + strings.Join(found, ", ")
	if len(found) == 0 {
		ch.Found = "no MX record at " + domain
	}
	if ch.Status == Fail {
		ch.Fix = fmt.Sprintf("Publish MX 10 %s. at %s: %s sent there must reach Heed.", bare(c.o.Hostname), domain, what)
	}
	return ch
}

// reverseDNSChecks: each sending address has a PTR record whose name
// resolves back to it (forward-confirmed reverse DNS), and hostname, the
// EHLO name, is one of those names.
func (c *Checker) reverseDNSChecks(ctx context.Context, src sourceSet) []Check {
	if src.problem != "" {
		st := Fail
		if !strings.HasPrefix(src.problem, "delivery.source_addresses is empty") {
			st = Warn
		}
		return []Check{{Name: "reverse_dns", Status: st, Found: src.problem,
			Expected: "PTR records of the sending addresses naming " + c.o.Hostname,
			Fix:      "Set delivery.source_addresses to the public addresses mail leaves from, or publish A/AAAA records for hostname."}}
	}
	out := make([]Check, len(src.addrs))
	for i, ip := range src.addrs {
		out[i] = c.reverseDNSCheck(ctx, ip, src)
	}
	return out
}

func (c *Checker) reverseDNSCheck(ctx context.Context, ip netip.Addr, src sourceSet) Check {
	name := "reverse_dns:" + ip.String()
	host := bare(c.o.Hostname)
	expected := fmt.Sprintf("PTR of %s → %s, whose A/AAAA records include %s", ip, host, ip)
	if src.derived {
		expected += " (the address is hostname's own)"
	}
	names, err := c.o.Resolver.LookupAddr(ctx, ip.String())
	if err != nil && !notFound(err) && len(names) == 0 {
		ch := couldNotLookUp(name, err)
		ch.Expected = expected
		return ch
	}
	ch := Check{Name: name, Expected: expected}
	if len(names) == 0 {
		ch.Status, ch.Found = Fail, "no PTR record for "+ip.String()
		ch.Fix = fmt.Sprintf("Ask whoever owns %s (your hosting provider) to set its PTR record to %s: Gmail and Yahoo refuse mail from addresses without one.", ip, host)
		return ch
	}
	var confirmed, seen []string
	for i, n := range names {
		if i == maxNames {
			break
		}
		n = bare(n)
		addrs, err := c.o.Resolver.LookupNetIP(ctx, "ip", fqdn(n))
		if err != nil && !notFound(err) {
			ch := couldNotLookUp(name, err)
			ch.Expected = expected
			return ch
		}
		var as []string
		for _, a := range addrs {
			as = append(as, a.Unmap().String())
			if a.Unmap() == ip {
				confirmed = append(confirmed, n)
			}
		}
		seen = append(seen, fmt.Sprintf("%s → %s", n, orNone(as)))
	}
	ch.Found = fmt.Sprintf("PTR of %s: %s", ip, strings.Join(seen, "; "))
	switch {
	case len(confirmed) == 0:
		ch.Status = Fail
		ch.Fix = fmt.Sprintf("Make the PTR name of %s resolve back to it (an A/AAAA record), or change the PTR to %s: receivers trust only forward-confirmed reverse DNS.", ip, host)
	case !slices.Contains(confirmed, host):
		ch.Status = Warn
		ch.Fix = fmt.Sprintf("Set hostname to %s, or the PTR of %s to %s: an EHLO name that differs from the reverse name looks like a spammer's.", confirmed[0], ip, host)
	default:
		ch.Status = OK
	}
	return ch
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no address"
	}
	return strings.Join(s, ", ")
}
