package readiness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// spfResult is check_host()'s result (RFC 7208 section 2.6).
type spfResult string

const (
	spfPass      spfResult = "pass"
	spfFail      spfResult = "fail"
	spfSoftFail  spfResult = "softfail"
	spfNeutral   spfResult = "neutral"
	spfNone      spfResult = "none"
	spfPermError spfResult = "permerror"
	spfTempError spfResult = "temperror"
)

// Section 4.6.4's limits.
const (
	maxLookups     = 10 // terms that cause DNS queries, all records together
	maxVoidLookups = 2  // of those, answers with no records
	maxNames       = 10 // MX hosts of one mx, names of one ptr
)

// errUnsupported is a macro this evaluator does not expand: the result is
// unknown, not an error of the record.
var errUnsupported = errors.New("uses macros Heed does not evaluate")

// spfEval is one check_host() run with its counters, which span the
// includes and redirects it follows (section 4.6.4).
type spfEval struct {
	ctx     context.Context
	r       *net.Resolver
	ip      netip.Addr
	sender  string // the MAIL FROM address (local@domain)
	helo    string
	lookups int
	voids   int
	matched string // the mechanism that matched at the top level
	trouble error  // the error behind permerror/temperror, or errUnsupported
	top     string // the record of the domain asked about
}

// checkHost evaluates domain's SPF record for e.ip (section 4).
func (e *spfEval) checkHost(domain string, depth int) spfResult {
	rec, res := e.record(domain, depth)
	if rec == nil {
		return res
	}
	for _, m := range rec.terms {
		ok, res := e.matches(m, domain, depth)
		if res != "" {
			return res
		}
		if ok {
			if depth == 0 {
				e.matched = m.String()
			}
			return qualifierResult(m.qualifier)
		}
	}
	if rec.redirect == "" {
		return spfNeutral // section 4.7: no match, no redirect
	}
	if err := e.count(); err != nil {
		return e.perm(err)
	}
	target, err := e.expand(rec.redirect, domain)
	if err != nil {
		return e.macroError(err)
	}
	res = e.checkHost(target, depth+1)
	if res == spfNone {
		// Section 6.1: a redirect to a domain without a record is permerror.
		return e.perm(fmt.Errorf("redirect=%s has no SPF record", target))
	}
	return res
}

// record fetches and parses domain's SPF record (section 4.5); a nil
// record comes with the result to return.
func (e *spfEval) record(domain string, depth int) (*spfRecord, spfResult) {
	txts, err := e.r.LookupTXT(e.ctx, fqdn(domain))
	if err != nil && !notFound(err) {
		e.trouble = fmt.Errorf("TXT %s: %s", domain, lookupError(err))
		return nil, spfTempError
	}
	var spf []string
	for _, t := range txts {
		if isSPF(t) {
			spf = append(spf, t)
		}
	}
	switch len(spf) {
	case 0:
		e.trouble = fmt.Errorf("%s has no SPF record", domain)
		return nil, spfNone
	case 1:
	default:
		return nil, e.perm(fmt.Errorf("%s has %d SPF records; a domain may have one (section 4.5)", domain, len(spf)))
	}
	if depth == 0 {
		e.top = spf[0]
	}
	rec, err := parseSPF(spf[0])
	if err != nil {
		return nil, e.perm(fmt.Errorf("%s: %v", domain, err))
	}
	return rec, ""
}

func (e *spfEval) perm(err error) spfResult {
	e.trouble = err
	return spfPermError
}

func (e *spfEval) macroError(err error) spfResult {
	if errors.Is(err, errUnsupported) {
		e.trouble = err
		return spfTempError // not the record's fault: the report warns
	}
	return e.perm(err)
}

// count records a term that queries the DNS.
func (e *spfEval) count() error {
	e.lookups++
	if e.lookups > maxLookups {
		return fmt.Errorf("more than %d DNS lookups (RFC 7208 section 4.6.4)", maxLookups)
	}
	return nil
}

// void records a query that found nothing.
func (e *spfEval) void() error {
	e.voids++
	if e.voids > maxVoidLookups {
		return fmt.Errorf("more than %d lookups found nothing (RFC 7208 section 4.6.4)", maxVoidLookups)
	}
	return nil
}

func qualifierResult(q byte) spfResult {
	switch q {
	case '-':
		return spfFail
	case '~':
		return spfSoftFail
	case '?':
		return spfNeutral
	}
	return spfPass
}

// matches evaluates one mechanism (section 5). A non-empty result ends
// the evaluation (an error, or an include's).
func (e *spfEval) matches(m spfMechanism, domain string, depth int) (bool, spfResult) {
	switch m.kind {
	case "all":
		return true, ""
	case "ip4", "ip6":
		return m.prefix.Contains(e.ip), ""
	}
	if err := e.count(); err != nil {
		return false, e.perm(err)
	}
	target := domain
	if m.domain != "" {
		t, err := e.expand(m.domain, domain)
		if err != nil {
			return false, e.macroError(err)
		}
		target = t
	}
	switch m.kind {
	case "include":
		// Section 5.2: the included record's pass matches; fail, softfail
		// and neutral do not; none is permerror.
		switch res := e.checkHost(target, depth+1); res {
		case spfPass:
			return true, ""
		case spfFail, spfSoftFail, spfNeutral:
			return false, ""
		case spfNone:
			return false, e.perm(fmt.Errorf("include:%s has no SPF record", target))
		default:
			return false, res
		}
	case "a":
		return e.addressMatch(target, m)
	case "mx":
		return e.mxMatch(target, m)
	case "ptr":
		return e.ptrMatch(target)
	default: // exists
		addrs, err := e.r.LookupNetIP(e.ctx, "ip4", fqdn(target))
		return e.found(len(addrs) > 0, len(addrs) == 0, err)
	}
}

// found turns a lookup into a match, counting void answers.
func (e *spfEval) found(match, empty bool, err error) (bool, spfResult) {
	if err != nil && !notFound(err) {
		e.trouble = errors.New(lookupError(err))
		return false, spfTempError
	}
	if empty || err != nil {
		if verr := e.void(); verr != nil {
			return false, e.perm(verr)
		}
	}
	return match, ""
}

// addresses looks up name's A records for an IPv4 client, AAAA for IPv6
// (section 5.3).
func (e *spfEval) addresses(name string) ([]netip.Addr, error) {
	network := "ip4"
	if e.ip.Is6() {
		network = "ip6"
	}
	addrs, err := e.r.LookupNetIP(e.ctx, network, fqdn(name))
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, err
}

// inNetwork compares with a and mx's dual-cidr-length.
func (e *spfEval) inNetwork(a netip.Addr, m spfMechanism) bool {
	bits := m.cidr4
	if e.ip.Is6() {
		bits = m.cidr6
	}
	if bits < 0 {
		return a == e.ip
	}
	p, err := a.Prefix(bits)
	return err == nil && p.Contains(e.ip)
}

func (e *spfEval) addressMatch(name string, m spfMechanism) (bool, spfResult) {
	addrs, err := e.addresses(name)
	match := false
	for _, a := range addrs {
		match = match || e.inNetwork(a, m)
	}
	return e.found(match, len(addrs) == 0, err)
}

func (e *spfEval) mxMatch(name string, m spfMechanism) (bool, spfResult) {
	mxs, err := e.r.LookupMX(e.ctx, fqdn(name))
	if ok, res := e.found(false, len(mxs) == 0, err); ok || res != "" || len(mxs) == 0 {
		return ok, res
	}
	if len(mxs) > maxNames {
		return false, e.perm(fmt.Errorf("mx:%s has more than %d MX records (RFC 7208 section 4.6.4)", name, maxNames))
	}
	for _, mx := range mxs {
		if mx.Host == "." {
			continue // RFC 7505 null MX
		}
		addrs, err := e.addresses(mx.Host)
		if err != nil && !notFound(err) {
			e.trouble = errors.New(lookupError(err))
			return false, spfTempError
		}
		for _, a := range addrs {
			if e.inNetwork(a, m) {
				return true, ""
			}
		}
	}
	return false, ""
}

// ptrMatch: a validated reverse name of the client equal to or under
// name (section 5.5; the mechanism is discouraged, but still evaluated).
func (e *spfEval) ptrMatch(name string) (bool, spfResult) {
	names, err := e.r.LookupAddr(e.ctx, e.ip.String())
	if ok, res := e.found(false, len(names) == 0, err); ok || res != "" || len(names) == 0 {
		return ok, res
	}
	want := bare(name)
	for i, n := range names {
		if i == maxNames {
			break
		}
		n = bare(n)
		if n != want && !strings.HasSuffix(n, "."+want) {
			continue
		}
		addrs, _ := e.addresses(n)
		for _, a := range addrs {
			if a == e.ip {
				return true, ""
			}
		}
	}
	return false, ""
}
