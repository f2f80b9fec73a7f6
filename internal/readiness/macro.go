package readiness

import (
	"fmt"
	"net/url"
	"strings"
)

// expand expands a domain-spec's macros (RFC 7208 section 7) for the
// current domain. The letters a readiness report knows are expanded: s, l,
// o, d, i, v and h. p needs a validated reverse name of the client and c,
// r, t belong to exp= only; a record using them gets errUnsupported, and
// the report warns instead of guessing.
func (e *spfEval) expand(spec, domain string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++ // checkMacroString has vouched for what follows
		switch spec[i] {
		case '%':
			b.WriteByte('%')
			continue
		case '_':
			b.WriteByte(' ')
			continue
		case '-':
			b.WriteString("%20")
			continue
		}
		end := strings.IndexByte(spec[i:], '}')
		m, err := parseMacro(spec[i+1 : i+end])
		if err != nil {
			return "", err
		}
		i += end
		v, err := e.macroValue(m.letter, domain)
		if err != nil {
			return "", err
		}
		b.WriteString(m.apply(v))
	}
	return truncateDomain(b.String()), nil
}

func (e *spfEval) macroValue(letter byte, domain string) (string, error) {
	local, senderDomain, _ := strings.Cut(e.sender, "@")
	switch letter {
	case 's':
		return e.sender, nil
	case 'l':
		return local, nil
	case 'o':
		return senderDomain, nil
	case 'd':
		return bare(domain), nil
	case 'h':
		return e.helo, nil
	case 'v':
		if e.ip.Is4() {
			return "in-addr", nil
		}
		return "ip6", nil
	case 'i':
		if e.ip.Is4() {
			return e.ip.String(), nil
		}
		// Section 7.3: an IPv6 address as dot-separated nibbles.
		raw := e.ip.As16()
		nibbles := make([]string, 0, 32)
		for _, x := range raw {
			nibbles = append(nibbles, fmt.Sprintf("%x", x>>4), fmt.Sprintf("%x", x&0xf))
		}
		return strings.Join(nibbles, "."), nil
	}
	return "", fmt.Errorf("%w (%%{%c})", errUnsupported, letter)
}

// apply splits v on the delimiters, reverses, keeps the rightmost parts
// and joins them with dots (section 7.3).
func (m macro) apply(v string) string {
	if m.digits > 0 || m.reverse || m.delims != "" {
		delims := m.delims
		if delims == "" {
			delims = "."
		}
		parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
		if m.reverse {
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
		if m.digits > 0 && m.digits < len(parts) {
			parts = parts[len(parts)-m.digits:]
		}
		v = strings.Join(parts, ".")
	}
	if m.upper {
		v = url.PathEscape(v)
	}
	return v
}

// truncateDomain drops left labels until the name fits 253 octets
// (section 7.3).
func truncateDomain(s string) string {
	for len(s) > 253 {
		_, rest, ok := strings.Cut(s, ".")
		if !ok {
			return s[len(s)-253:]
		}
		s = rest
	}
	return s
}
