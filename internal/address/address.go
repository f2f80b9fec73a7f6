// Package address parses the mailbox paths of the SMTP envelope (RFC 5321
// section 4.1.2): a dot-atom or quoted-string local part and a domain. The
// domain is lowercased; the local part is kept as given, because only the
// receiving domain may interpret it (RFC 5321 section 2.4).
//
// Limits are RFC 5321 section 4.5.3.1: local part 64 octets, domain 255,
// whole path 256 (254 for the mailbox once brackets are counted).
// Non-ASCII addresses (SMTPUTF8) and address literals are refused: Heed
// does not offer SMTPUTF8, and mail to address literals is not what a
// relay for businesses' customers sends.
package address

import (
	"errors"
	"fmt"
	"strings"
)

// Address is a parsed mailbox.
type Address struct {
	Local  string
	Domain string
}

// String is local@domain.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// Errors returned by Parse.
var (
	ErrEmpty   = errors.New("empty address")
	ErrTooLong = errors.New("address too long")
)

// Parse parses an envelope mailbox without its angle brackets.
func Parse(s string) (Address, error) {
	if s == "" {
		return Address{}, ErrEmpty
	}
	if len(s) > 254 {
		return Address{}, ErrTooLong
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Address{}, fmt.Errorf("%q: an address is local-part@domain", s)
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64 {
		return Address{}, fmt.Errorf("%q: local part longer than 64 octets", s)
	}
	if err := checkLocal(local); err != nil {
		return Address{}, fmt.Errorf("%q: %w", s, err)
	}
	d, err := Domain(domain)
	if err != nil {
		return Address{}, fmt.Errorf("%q: %w", s, err)
	}
	return Address{Local: local, Domain: d}, nil
}

// atext is RFC 5322 section 3.2.3.
func atext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func checkLocal(l string) error {
	if l[0] == '"' {
		return checkQuoted(l)
	}
	for _, atom := range strings.Split(l, ".") {
		if atom == "" {
			return errors.New("local part has an empty dot-separated part")
		}
		for i := 0; i < len(atom); i++ {
			if !atext(atom[i]) {
				return fmt.Errorf("character %q is not allowed in a local part without quotes", atom[i])
			}
		}
	}
	return nil
}

// checkQuoted accepts RFC 5321's Quoted-string: printable ASCII, with
// backslash escapes of printable ASCII.
func checkQuoted(l string) error {
	if len(l) < 2 || l[len(l)-1] != '"' {
		return errors.New("unterminated quoted local part")
	}
	in := l[1 : len(l)-1]
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\\':
			i++
			if i == len(in) || in[i] < 32 || in[i] > 126 {
				return errors.New("bad escape in quoted local part")
			}
		case c == '"':
			return errors.New("unescaped quote in quoted local part")
		case c < 32 || c > 126:
			return fmt.Errorf("character %q is not allowed in a local part", c)
		}
	}
	return nil
}

// Domain checks and lowercases a domain name (RFC 1035 labels, at least
// two of them; internationalised names in their A-label form).
func Domain(s string) (string, error) {
	d := strings.ToLower(s)
	if len(d) == 0 || len(d) > 255 {
		return "", errors.New("domain must be 1 to 255 octets")
	}
	if d[0] == '[' {
		return "", errors.New("address literals are not accepted")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("domain %q is not fully qualified", s)
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("domain %q has an invalid label", s)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("character %q is not allowed in domain %q", c, s)
			}
		}
	}
	return d, nil
}
