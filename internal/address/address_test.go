package address

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	ok := map[string]string{
		"a@example.com":                  "a@example.com",
		"Jane.Doe@Example.COM":           "Jane.Doe@example.com",
		"x+tag@sub.example.co.uk":        "x+tag@sub.example.co.uk",
		`"john doe"@example.com`:         `"john doe"@example.com`,
		`"a\"b"@example.com`:             `"a\"b"@example.com`,
		"o'brien@xn--bcher-kva.example":  "o'brien@xn--bcher-kva.example",
		strings.Repeat("l", 64) + "@a.b": strings.Repeat("l", 64) + "@a.b",
	}
	for in, want := range ok {
		a, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if a.String() != want {
			t.Errorf("Parse(%q) = %q, want %q", in, a, want)
		}
	}
	bad := []string{
		"", "plain", "@example.com", "a@", "a@localhost", "a..b@example.com", ".a@example.com",
		"a@[127.0.0.1]", "a b@example.com", "a@exa mple.com", "a@-x.com", "a@x-.com",
		"é@example.com", "a@exämple.com", `"unterminated@example.com`, "a@example..com",
		strings.Repeat("l", 65) + "@a.b", "a@" + strings.Repeat("x", 250) + ".com",
		"a\r\nRCPT TO:<b@example.com>@example.com",
	}
	for _, in := range bad {
		if a, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %q, want an error", in, a)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a@example.com", `"q\"x"@ex.org`, "a@[1.2.3.4]", "a..b@c.d", "@", "x@y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		// A parsed address round-trips and stays within the RFC limits.
		b, err := Parse(a.String())
		if err != nil || b != a {
			t.Fatalf("%q parsed to %q which reparses to %q, %v", s, a, b, err)
		}
		if len(a.Local) > 64 || len(a.String()) > 254 || strings.ContainsAny(a.String(), "\r\n\x00 ") && a.Local[0] != '"' {
			t.Fatalf("%q parsed to out-of-limits %q", s, a)
		}
		if a.Domain != strings.ToLower(a.Domain) {
			t.Fatalf("domain not lowercased: %q", a.Domain)
		}
	})
}
