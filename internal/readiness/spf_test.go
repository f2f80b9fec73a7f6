package readiness

import (
	"errors"
	"strings"
	"testing"
)

// TestParseSPF: records as RFC 7208 section 12's grammar has them parse
// into their terms; broken ones are syntax errors (permerror).
func TestParseSPF(t *testing.T) {
	good := map[string]string{
		"v=spf1":      "",
		"V=SPF1 -ALL": "-all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all":                  "ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all",
		"v=spf1 a mx/24 a:relay.test//64 ?mx:m.test/16//48 -all":          "a mx a:relay.test ?mx:m.test -all",
		"v=spf1 include:_spf.google.com exists:%{i}.%{d2}._spf.test -all": "include:_spf.google.com exists:%{i}.%{d2}._spf.test -all",
		"v=spf1 redirect=_spf.test unknown-mod=x":                         "",
		"v=spf1 ptr:%{ir}.%{v}.arpa.test ~all":                            "ptr:%{ir}.%{v}.arpa.test ~all",
	}
	for in, terms := range good {
		r, err := parseSPF(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		var got []string
		for _, m := range r.terms {
			got = append(got, m.String())
		}
		if strings.Join(got, " ") != terms {
			t.Errorf("%q: terms %q, want %q", in, strings.Join(got, " "), terms)
		}
	}
	for _, in := range []string{
		"v=spf10 -all", "spf1 -all", "v=spf1 foo", "v=spf1 all:x", "v=spf1 include",
		"v=spf1 include:", "v=spf1 ip4:192.0.2.1/33", "v=spf1 ip4:2001:db8::1", "v=spf1 ip6:192.0.2.1",
		"v=spf1 a/024", "v=spf1 redirect=a redirect=b", "v=spf1 exists:%{z}", "v=spf1 exists:%{d0}",
		"v=spf1 exists:%x", "v=spf1 exists:%{d", "v=spf1 a:", "v=spf1 redirect=",
	} {
		if _, err := parseSPF(in); !errors.Is(err, errSyntax) {
			t.Errorf("%q: %v, want a syntax error", in, err)
		}
	}
}

// TestMacroExpansion: RFC 7208 section 7.4's examples.
func TestMacroExpansion(t *testing.T) {
	e := &spfEval{ip: addr("192.0.2.3"), sender: "strong-bad@email.example.com", helo: "relay.test"}
	for spec, want := range map[string]string{
		"%{s}":                  "strong-bad@email.example.com",
		"%{o}":                  "email.example.com",
		"%{d}":                  "email.example.com",
		"%{d4}":                 "email.example.com",
		"%{d3}":                 "email.example.com",
		"%{d2}":                 "example.com",
		"%{d1}":                 "com",
		"%{dr}":                 "com.example.email",
		"%{d2r}":                "example.email",
		"%{l}":                  "strong-bad",
		"%{l-}":                 "strong.bad",
		"%{lr}":                 "strong-bad",
		"%{lr-}":                "bad.strong",
		"%{l1r-}":               "strong",
		"%{ir}.%{v}._spf.%{d2}": "3.2.0.192.in-addr._spf.example.com",
		"%{lr-}.lp._spf.%{d2}":  "bad.strong.lp._spf.example.com",
		"%%%_%-":                "% %20",
	} {
		got, err := e.expand(spec, "email.example.com")
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", spec, got, err, want)
		}
	}
	e.ip = addr("2001:db8::cb01")
	got, _ := e.expand("%{ir}.%{v}._spf.%{d2}", "email.example.com")
	if want := "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"; got != want {
		t.Errorf("IPv6 %%{ir}: %q, want %q", got, want)
	}
	if _, err := e.expand("%{p}.test", "x.test"); !errors.Is(err, errUnsupported) {
		t.Errorf("%%{p}: %v, want errUnsupported", err)
	}
}

// FuzzParseSPF: any TXT value parses or fails cleanly, and the domains of
// a record that parses expand without panicking.
func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{
		"v=spf1 a mx -all", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all",
		"v=spf1 include:%{d2} exists:%{ir}.%{l1r-}.%{v}._spf.%{d} redirect=%{o}",
		"v=spf1 a:relay.test/24//64 ?ptr -all", "v=spf1 exists:%{i",
	} {
		f.Add(s)
	}
	e := &spfEval{ip: addr("192.0.2.3"), sender: "a-b@example.com", helo: "relay.test"}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseSPF(s)
		if err != nil {
			if !errors.Is(err, errSyntax) {
				t.Fatalf("%q: error %v is not a syntax error", s, err)
			}
			return
		}
		specs := []string{r.redirect}
		for _, m := range r.terms {
			specs = append(specs, m.domain)
		}
		for _, spec := range specs {
			if out, err := e.expand(spec, "example.com"); err == nil && len(out) > 253 {
				t.Fatalf("%q expands to %d octets", spec, len(out))
			}
		}
	})
}
