package events

import "testing"

func TestEraseText(t *testing.T) {
	const pat = "pat@example.net"
	for _, c := range []struct{ in, want string }{
		{"550 <Pat@Example.NET>: no such user", "550 <[erased]>: no such user"},
		{"xpat@example.net and pat@example.network", "xpat@example.net and pat@example.network"},
		{"to pat@example.net. Bye", "to [erased]. Bye"},
		{"Caf\xe9 pat@example.net \xe9", "Caf\xe9 [erased] \xe9"},   // not UTF-8: bytes kept
		{"\u0130 pat@example.net \u212a", "\u0130 [erased] \u212a"}, // İ and the Kelvin sign change length in ToLower
		{"pat@example.net,pat@example.net", "[erased],[erased]"},
		{"\u212aelvin", "\u212aelvin"},
		{`451 \u003cpat@example.net\u003e later`, `451 \u003c[erased]\u003e later`},
	} {
		if got := EraseText(c.in, pat); got != c.want {
			t.Errorf("EraseText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if !ContainsFold([]byte(`{"recipient":"a\u0026b@x.example"}`), "a&b@x.example") {
		t.Error("the JSON-escaped spelling is missed")
	}
	if ContainsFold([]byte("pat@example.net"), "at@example.net") {
		t.Error("a suffix of a longer address matched")
	}
}
