package suppression

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

func TestNormalize(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	for _, tc := range []struct{ in, want string }{
		{"bob@example.com", "bob@example.com"},
		{"  Bob@Example.COM \t", "bob@example.com"},
		{"Bob@BÜCHER.example", "bob@xn--bcher-kva.example"},
		{"bob@xn--bcher-kva.example", "bob@xn--bcher-kva.example"},
		{"bob@bücher.example.", "bob@xn--bcher-kva.example"},
		// No provider folding: these are other mailboxes, maybe other people.
		{"Foo+News@Gmail.com", "foo+news@gmail.com"},
		{"f.o.o@gmail.com", "f.o.o@gmail.com"},
		// Quotes that are not needed go; needed ones are made canonical.
		{`"bob"@example.com`, "bob@example.com"},
		{`"B\ob"@example.com`, "bob@example.com"},
		{`"John Doe"@example.com`, `"john doe"@example.com`},
		{`"a\ b"@example.com`, `"a b"@example.com`},
		{`"a@b"@example.com`, `"a@b"@example.com`},
		{`"a\"b"@example.com`, `"a\"b"@example.com`},
		// UTF-8 local parts (RFC 6531) are lowercased too.
		{"JÖRG@example.de", "jörg@example.de"},
		// NFC: a combining diaeresis is the precomposed letter; case is
		// folded so that what upper-cases alike is one.
		{"jo\u0308rg@example.de", "jörg@example.de"},
		{"JO\u0308RG@example.de", "jörg@example.de"},
		{"\u212Aelvin@example.com", "kelvin@example.com"}, // KELVIN SIGN
		{"ſam@example.com", "sam@example.com"},
		{"<\u0338@example.com", "≮@example.com"},          // "≮" decomposed needs no quotes
		{"\"a\u037Eb\"@example.com", `"a;b"@example.com`}, // GREEK QUESTION MARK is ";"
		{"用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"},
		// Dots as written: some providers issued such addresses.
		{"a..b.@docomo.ne.jp", "a..b.@docomo.ne.jp"},
		{long63 + "a@example.com", long63 + "a@example.com"},
	} {
		got, err := Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestNormalizeOutsideBMP: a starter outside the BMP with a combining
// mark stays itself. x/text before v0.42 composed U+10041 and an acute to
// "Á" (golang/go#81028), which foldLocal's stability check refused; the
// check stays for the next such fault.
func TestNormalizeOutsideBMP(t *testing.T) {
	in := "\U00010041\u0301@example.com"
	if got, err := Normalize(in); err != nil || got != in {
		t.Errorf("Normalize(%q) = %q, %v", in, got, err)
	}
}

func TestNormalizeRefuses(t *testing.T) {
	label := strings.Repeat("x", 60)
	domain247 := label + "." + label + "." + label + "." + label + ".com"
	for _, in := range []string{
		"", "   ", "bob", "@example.com", "bob@", "bob@.", "bob@localhost",
		strings.Repeat("a", 65) + "@example.com", // local part > 64 octets
		strings.Repeat("é", 33) + "@example.com", // 66 octets, 33 characters
		"bob@" + label + "." + domain247,         // domain > 253
		"bobbybobby@" + domain247,                // > 254 in all
		"bob smith@example.com", "bob<x>@example.com", "a@b@example.com", `""@example.com`, `"bob@example.com`,
		"bob\n@example.com", "bob\x00@example.com", "\xff@example.com",
		"a\u037Eb@example.com", // ";" without quotes
		"bob@exa mple.com", "bob@-example.com", "bob@example..com", "bob@[192.0.2.1]", "bob@xn--a.example",
	} {
		got, err := Normalize(in)
		if err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", in, got)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%q): %v does not wrap ErrInvalid", in, err)
		}
	}
}

// TestNormalizeErrorsDoNotEcho: errors end up in logs and replies, so
// they never repeat the address or a part of it.
func TestNormalizeErrorsDoNotEcho(t *testing.T) {
	for _, in := range []string{
		"zqsecret", "zqsecret@", "zq secret@example.com", "zqsecret\x01@example.com", "\"zq\x01secret\"@example.com",
		"bob@zqsecret", "bob@zqsecret..example", "bob@-zqsecret.example", "bob@zqsecret\u2488.example",
		"bob@zqsécret\u00ad-.example", "bob@zq\u3002\u3002secret.example", "bob@[zqsecret]",
	} {
		_, err := Normalize(in)
		if err == nil {
			t.Errorf("Normalize(%q) succeeded", in)
		} else if strings.Contains(strings.ToLower(err.Error()), "zq") {
			t.Errorf("Normalize(%q): %q repeats the input", in, err)
		}
	}
}

// TestNormalizeASCIIAllocs: the delivery path normalises every recipient
// of every attempt; an address already in normal form costs no allocation.
func TestNormalizeASCIIAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Normalize("bob.smith+news@mail.example.com") }); n != 0 {
		t.Errorf("Normalize of a normal ASCII address: %v allocations", n)
	}
}

// FuzzNormalize: Normalize never panics, what it returns is valid UTF-8
// within RFC 5321's limits, and normalising again changes nothing (the
// store hashes the result, so a second spelling would be a second entry).
// Other spellings of one mailbox normalise alike: the local part
// NFD-decomposed, and upper-cased (decomposed first: upper-casing a
// combining iota subscript out of canonical order makes another string,
// which Unicode's canonical caseless match also decomposes first).
func FuzzNormalize(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		checkPlainASCII(t, in)
		n, err := Normalize(in)
		if err != nil {
			return
		}
		if !utf8.ValidString(n) || len(n) > maxAddress {
			t.Fatalf("Normalize(%q) = %q: invalid UTF-8 or too long", in, n)
		}
		n2, err := Normalize(n)
		if err != nil || n2 != n {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, n, n, n2, err)
		}
		a := strings.TrimSpace(in)
		at := strings.LastIndexByte(a, '@')
		local, domain := a[:at], a[at:]
		nLocal, nDomain := n[:strings.LastIndexByte(n, '@')], n[strings.LastIndexByte(n, '@'):]
		for _, v := range []string{
			norm.NFD.String(local) + domain,
			strings.ToUpper(norm.NFD.String(local)) + domain,
			strings.ToUpper(nLocal) + nDomain,
			norm.NFD.String(nLocal) + nDomain,
		} {
			if len(v) > 4*maxAddress {
				continue // refused for its length before any work
			}
			if got, err := Normalize(v); err != nil || got != n {
				t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, n, v, got, err)
			}
		}
	})
}

// checkPlainASCII: for the domains normalizeDomain takes without the IDNA
// tables, the tables would have said the same.
func checkPlainASCII(t *testing.T, in string) {
	d := strings.TrimSuffix(in[strings.LastIndexByte(in, '@')+1:], ".")
	if d == "" || !plainASCII(d) {
		return
	}
	fast := strings.ToLower(d)
	ferr := checkDomain(fast)
	slow, serr := idna.Lookup.ToASCII(d)
	if serr == nil {
		serr = checkDomain(slow)
	}
	if (ferr == nil) != (serr == nil) || ferr == nil && fast != slow {
		t.Fatalf("domain %q: fast path %q, %v; IDNA %q, %v", d, fast, ferr, slow, serr)
	}
}
