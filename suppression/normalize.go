package suppression

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// RFC 5321 section 4.5.3.1: local part 64 octets, and a path of 256 octets
// with its angle brackets, so 254 for the mailbox.
const (
	maxLocal   = 64
	maxAddress = 254
	maxDomain  = 253 // RFC 1035 section 2.3.4, less the root's dot
)

// Normalize returns the one spelling of addr under which it is suppressed,
// so that an opt-out cannot be dodged by writing the same mailbox another
// way. Errors wrap ErrInvalid, and say what is wrong without repeating the
// address or any part of it: they end up in logs and in replies.
//
// The rules, and why:
//
//   - Spaces around the address are dropped; it is split at the last '@'
//     (a quoted local part may hold an '@').
//   - The local part is lowercased. RFC 5321 section 2.4 lets a receiving
//     host treat local parts as case-sensitive, but no real mailbox provider
//     does, and "Bob@" and "bob@" reach the same person; an opt-out must not
//     fail on case. Two people whose mailboxes differ only by case would
//     share one opt-out: the safe side of the trade. Beyond ASCII each
//     character becomes the lowercase of its uppercase, so the spellings
//     that upper-case alike are one (ſ and s, K and k, ı and i).
//   - A UTF-8 local part is put in Unicode NFC (RFC 6532 section 3.1), so
//     "jörg" typed with a precomposed ö and with o and a combining
//     diaeresis is one mailbox. Case is folded on the decomposed form
//     (Unicode's canonical caseless match, section 3.13), so upper-casing
//     a combining iota subscript cannot tell two spellings apart.
//   - A quoted local part whose content needs no quotes is unquoted
//     ("bob"@x is bob@x, RFC 5321 section 4.1.2); one that needs them is
//     re-quoted with the fewest escapes, so each mailbox has one spelling.
//   - UTF-8 local parts (RFC 6531) are accepted; a character that needs
//     quotes does in any spelling ("<" followed by a combining long solidus
//     is "≮" and needs none; U+037E is ";" and needs them). Dots are taken
//     as written,
//     even doubled or at the ends: some providers issued such addresses and
//     their opt-outs must still be recorded.
//   - The domain loses one trailing dot and is converted to A-labels
//     (UTS 46 lookup profile, lowercase), so BÜCHER.example and
//     xn--bcher-kva.example are one domain.
//   - No provider-specific folding: dots and "+tag" are not removed, even
//     for Gmail. Whether foo+x@ reaches foo@ is the provider's rule, it
//     changes, and on many domains foo+x is somebody else: folding would
//     suppress, or reveal the opt-out of, a different person.
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if a == "" {
		return "", invalid("empty address")
	}
	if len(a) > 4*maxAddress {
		// Far too long whatever the normalisation does: refuse before
		// spending work on it.
		return "", invalid("address longer than %d octets", maxAddress)
	}
	if !utf8.ValidString(a) {
		return "", invalid("address is not valid UTF-8")
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		// The address is not repeated in errors: they end up in logs.
		return "", invalid("no '@': an address is local-part@domain")
	}
	local, err := normalizeLocal(a[:at])
	if err != nil {
		return "", err
	}
	domain, err := normalizeDomain(a[at+1:])
	if err != nil {
		return "", err
	}
	if len(local)+1+len(domain) > maxAddress {
		return "", invalid("address longer than %d octets", maxAddress)
	}
	if local == a[:at] && domain == a[at+1:] {
		return a, nil // already normal, the common case: no allocation
	}
	return local + "@" + domain, nil
}

func normalizeLocal(l string) (string, error) {
	if l == "" {
		return "", invalid("empty local part")
	}
	quoted := l[0] == '"'
	content := l
	if quoted {
		c, err := unquote(l)
		if err != nil {
			return "", err
		}
		content = c
	}
	if content == "" {
		return "", invalid("empty local part")
	}
	content, err := foldLocal(content)
	if err != nil {
		return "", err
	}
	out := content
	if !needsNoQuotes(content) {
		if !quoted {
			// Checked on the normal form: whether a character needs
			// quotes must not depend on how it was composed.
			return "", invalid("a local part without quotes holds a character that needs them (a space, a control character or one of \"(),:;<>@[\\])")
		}
		out = quote(content)
	}
	if len(out) > maxLocal {
		return "", invalid("local part longer than %d octets", maxLocal)
	}
	return out, nil
}

// foldLocal returns the one form of a local part's content for case and
// canonical equivalence: NFD, each character to the lowercase of its
// uppercase, then NFC.
func foldLocal(s string) (string, error) {
	if isASCII(s) {
		return strings.ToLower(s), nil // allocates nothing when already lower case
	}
	d := norm.NFD.String(strings.Map(foldRune, norm.NFD.String(s)))
	out := norm.NFC.String(d)
	// x/text's composition has known faults (golang/go#81028: a starter
	// outside the BMP is cut to 16 bits, so U+10041 and an acute compose
	// to Á). A result that does not decompose back to what was composed
	// is not canonically equivalent to the input; refuse it, as
	// normalizeDomain refuses unstable A-labels, rather than let two
	// mailboxes share an entry or one mailbox have two.
	if norm.NFD.String(out) != d {
		return "", invalid("local part has no stable Unicode normal form")
	}
	return out, nil
}

func foldRune(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// unquotedOK is RFC 5322 atext, the dot, and (RFC 6531) any non-ASCII
// character.
func unquotedOK(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
		return true
	case r < 0x80:
		return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
	}
	// Non-ASCII spaces are left to quotes: TrimSpace would eat one at the
	// start of an unquoted local part and break idempotence.
	return printable(r) && !unicode.IsSpace(r)
}

// printable refuses the control characters, which no mailbox holds and which
// would let an entry smuggle line breaks into logs and CSV exports.
func printable(r rune) bool {
	return r >= 0x20 && r != 0x7f && !(r >= 0x80 && r < 0xa0) && r != utf8.RuneError
}

func needsNoQuotes(s string) bool {
	for _, r := range s {
		if !unquotedOK(r) {
			return false
		}
	}
	return true
}

// unquote reads RFC 5321's Quoted-string, with UTF-8 allowed (RFC 6531).
func unquote(l string) (string, error) {
	if len(l) < 2 || l[len(l)-1] != '"' {
		return "", invalid("unterminated quoted local part")
	}
	in := l[1 : len(l)-1]
	var b strings.Builder
	escaped := false
	for _, r := range in {
		switch {
		case !printable(r):
			return "", invalid("quoted local part holds a control character")
		case escaped:
			escaped = false
			b.WriteRune(r)
		case r == '\\':
			escaped = true
		case r == '"':
			return "", invalid("unescaped quote in a quoted local part")
		default:
			b.WriteRune(r)
		}
	}
	if escaped {
		return "", invalid("quoted local part ends with a backslash")
	}
	return b.String(), nil
}

// quote writes the canonical quoted form: only the quote and the backslash
// are escaped.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", invalid("empty domain")
	}
	if plainASCII(d) {
		// Letters, digits, hyphens and dots without a "--" at positions
		// 3-4 are what UTS 46 maps to themselves, lowercased: skipping
		// the IDNA tables keeps Check fast for nearly every address.
		a := strings.ToLower(d)
		if err := checkDomain(a); err != nil {
			return "", invalid("domain: %v", err)
		}
		return a, nil
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		// idna's errors quote the offending label: not repeated.
		return "", invalid("domain is not a valid internationalised domain name (UTS 46)")
	}
	if err := checkDomain(a); err != nil {
		return "", invalid("domain: %v", err)
	}
	// The lookup profile maps some inputs to a form that does not map to
	// itself again; refusing those keeps Normalize idempotent, which the
	// store relies on (it hashes what Normalize returns).
	if again, err := idna.Lookup.ToASCII(a); err != nil || again != a {
		return "", invalid("domain has no stable A-label form")
	}
	return a, nil
}

// plainASCII reports whether d holds only ASCII letters, digits, hyphens
// and dots, with no label that has hyphens in its third and fourth
// positions (an A-label, "xn--", or a reserved form, which IDNA checks).
func plainASCII(d string) bool {
	start := 0
	for i := 0; i <= len(d); i++ {
		if i == len(d) || d[i] == '.' {
			if i-start > 4 && d[start+2] == '-' && d[start+3] == '-' {
				return false
			}
			start = i + 1
			continue
		}
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkDomain checks the A-label form: at least two labels of 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen.
// Address literals ([192.0.2.1]) are refused: a suppression is for a
// mailbox at a domain.
func checkDomain(a string) error {
	if len(a) > maxDomain {
		return errors.New("longer than 253 octets")
	}
	if !strings.Contains(a, ".") {
		return errors.New("not fully qualified")
	}
	for l := range strings.SplitSeq(a, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("invalid label")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return errors.New("invalid character in a label")
			}
		}
	}
	return nil
}
