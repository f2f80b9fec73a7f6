package readiness

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// spfRecord is a parsed SPF record (RFC 7208 section 4.6).
type spfRecord struct {
	terms []spfMechanism
	// redirect is the redirect= modifier's domain-spec, "" without one.
	redirect string
}

// spfMechanism is one directive: qualifier, mechanism and its arguments
// (RFC 7208 section 5).
type spfMechanism struct {
	qualifier byte   // '+', '-', '~' or '?'
	kind      string // all, include, a, mx, ptr, ip4, ip6, exists
	// domain is the domain-spec, a macro-string; "" means the current
	// domain (a, mx, ptr).
	domain string
	// prefix is the network of ip4 and ip6.
	prefix netip.Prefix
	// cidr4 and cidr6 are a and mx's dual-cidr-length, -1 when absent.
	cidr4, cidr6 int
}

func (m spfMechanism) String() string {
	s := m.kind
	if m.qualifier != '+' {
		s = string(m.qualifier) + s
	}
	switch {
	case m.prefix.IsSingleIP():
		s += ":" + m.prefix.Addr().String()
	case m.kind == "ip4" || m.kind == "ip6":
		s += ":" + m.prefix.String()
	case m.domain != "":
		s += ":" + m.domain
	}
	return s
}

// isSPF reports a TXT value that is an SPF record: "v=spf1" alone or
// followed by a space (RFC 7208 section 4.5; "v=spf10" is not one).
func isSPF(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// errSyntax is a record that does not parse: permerror (section 4.6).
var errSyntax = errors.New("syntax error")

// parseSPF parses an SPF record, "v=spf1" and its terms.
func parseSPF(txt string) (*spfRecord, error) {
	if !isSPF(txt) {
		return nil, fmt.Errorf("%w: the record does not start with v=spf1", errSyntax)
	}
	r := &spfRecord{}
	seen := map[string]bool{}
	for term := range strings.FieldsSeq(txt[6:]) {
		if name, value, ok := modifier(term); ok {
			name = strings.ToLower(name)
			if (name == "redirect" || name == "exp") && seen[name] {
				return nil, fmt.Errorf("%w: %s= appears twice (section 6)", errSyntax, name)
			}
			seen[name] = true
			if name == "redirect" || name == "exp" {
				if err := checkMacroString(value); err != nil || value == "" {
					return nil, fmt.Errorf("%w: %s=%s is not a domain", errSyntax, name, value)
				}
			}
			if name == "redirect" {
				r.redirect = value
			}
			continue // unknown modifiers are ignored (section 6)
		}
		m, err := parseMechanism(term)
		if err != nil {
			return nil, err
		}
		r.terms = append(r.terms, m)
	}
	return r, nil
}

// modifier splits name=value when term is a modifier: the name is
// ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) (section 12).
func modifier(term string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(term, "=")
	if !ok || name == "" || !isAlpha(name[0]) {
		return "", "", false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return name, value, true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func parseMechanism(term string) (spfMechanism, error) {
	m := spfMechanism{qualifier: '+', cidr4: -1, cidr6: -1}
	if strings.IndexByte("+-~?", term[0]) >= 0 {
		m.qualifier, term = term[0], term[1:]
	}
	end := strings.IndexAny(term, ":/")
	if end < 0 {
		end = len(term)
	}
	m.kind, term = strings.ToLower(term[:end]), term[end:]
	bad := func(why string) (spfMechanism, error) {
		return spfMechanism{}, fmt.Errorf("%w: %s%s: %s", errSyntax, m.kind, term, why)
	}
	switch m.kind {
	case "all":
		if term != "" {
			return bad("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(term, ":") || len(term) == 1 {
			return bad("needs a domain")
		}
		m.domain = term[1:]
	case "a", "mx", "ptr":
		var err error
		if m.kind != "ptr" {
			if term, m.cidr4, m.cidr6, err = dualCIDR(term); err != nil {
				return bad(err.Error())
			}
		}
		if term != "" {
			if !strings.HasPrefix(term, ":") || len(term) == 1 {
				return bad("needs a domain after the colon")
			}
			m.domain = term[1:]
		}
	case "ip4", "ip6":
		p, err := ipNetwork(m.kind, strings.TrimPrefix(term, ":"))
		if err != nil || !strings.HasPrefix(term, ":") {
			return bad("not an " + m.kind + " network")
		}
		m.prefix = p
	default:
		return bad("unknown mechanism")
	}
	if m.domain != "" {
		if err := checkMacroString(m.domain); err != nil {
			return bad(err.Error())
		}
	}
	return m, nil
}

// dualCIDR strips a trailing "/n", "//m" or "/n//m" (section 5.6).
func dualCIDR(s string) (rest string, c4, c6 int, err error) {
	c4, c6 = -1, -1
	if i := strings.LastIndex(s, "//"); i >= 0 && allDigits(s[i+2:]) {
		if c6, err = cidrLength(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && allDigits(s[i+1:]) {
		if c4, err = cidrLength(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, c4, c6, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// cidrLength parses a prefix length: no leading zero (section 12's
// ip4-cidr-length), at most limit.
func cidrLength(s string, limit int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n > limit || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("/%s is not a prefix length from 0 to %d", s, limit)
	}
	return n, nil
}

// ipNetwork parses ip4's and ip6's argument: an address with an optional
// prefix length.
func ipNetwork(kind, s string) (netip.Prefix, error) {
	addr, length, hasLen := strings.Cut(s, "/")
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" || kind == "ip4" && !ip.Is4() || kind == "ip6" && !ip.Is6() {
		return netip.Prefix{}, errSyntax
	}
	bits := ip.BitLen()
	if hasLen {
		if bits, err = cidrLength(length, ip.BitLen()); err != nil {
			return netip.Prefix{}, err
		}
	}
	return ip.Prefix(bits)
}

// checkMacroString validates a macro-string (section 7.1): every "%" is
// "%%", "%_", "%-" or "%{" letter *digit ["r"] *delimiter "}".
func checkMacroString(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("character %q is not allowed", c)
		}
		if c != '%' {
			continue
		}
		if i+1 == len(s) {
			return errors.New("a % at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("%%%c is not a macro", s[i+1])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return errors.New("a macro without its }")
		}
		if _, err := parseMacro(s[i+2 : i+end]); err != nil {
			return err
		}
		i += end
	}
	return nil
}

// macro is one %{...} expansion (section 7.1).
type macro struct {
	letter  byte // lower case
	upper   bool // URL-escape the value
	digits  int  // 0: all parts
	reverse bool
	delims  string
}

func parseMacro(s string) (macro, error) {
	if s == "" || !isAlpha(s[0]) {
		return macro{}, errors.New("a macro without a letter")
	}
	m := macro{letter: s[0] | 0x20, upper: s[0] < 'a'}
	if strings.IndexByte("slodiphcrtv", m.letter) < 0 {
		return macro{}, fmt.Errorf("%%{%c} is not a macro letter", s[0])
	}
	i := 1
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i > 1 {
		n, err := strconv.Atoi(s[1:i])
		if err != nil || n == 0 || n > 128 {
			return macro{}, errors.New("a macro's digit transformer must be from 1 to 128")
		}
		m.digits = n
	}
	if i < len(s) && (s[i] == 'r' || s[i] == 'R') {
		m.reverse = true
		i++
	}
	for ; i < len(s); i++ {
		if strings.IndexByte(".-+,/_=", s[i]) < 0 {
			return macro{}, fmt.Errorf("%q is not a macro delimiter", s[i])
		}
	}
	m.delims = s[len(s)-countDelims(s):]
	return m, nil
}

// countDelims is how many delimiter characters end s.
func countDelims(s string) int {
	n := 0
	for n < len(s) && strings.IndexByte(".-+,/_=", s[len(s)-1-n]) >= 0 {
		n++
	}
	return n
}
