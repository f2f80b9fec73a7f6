package dkim

import (
	"bytes"
	"testing"

	"github.com/heedmail/heed/internal/dkim/dkimtest"
)

// dkimpyVerify runs dkimpy once over msgs with zone as DNS.
func dkimpyVerify(t *testing.T, zone fakeDNS, msgs ...[]byte) [][]dkimtest.Result {
	t.Helper()
	// dkimpy reads one string per record; it gets the character-strings
	// joined, as a resolver would hand them over.
	joined := map[string]string{}
	for name := range zone {
		v, _ := zone.lookupTXT(name)
		joined[name] = v[0]
	}
	return dkimtest.Verify(t, joined, msgs...)
}

// TestDkimpyVerifies has an implementation written independently of
// go-msgauth check Heed's signatures, each signature on its own, so that a
// bug shared by go-msgauth's signer and verifier (both use its own
// canonicalisation) cannot pass unnoticed; and shows that dkimpy rejects
// tampered copies and wrong keys, so that a verifier set up to pass
// everything cannot make this test pass.
func TestDkimpyVerifies(t *testing.T) {
	dkimtest.Require(t)
	keys := signingKeys(t)
	zone := publish(t, keys)
	type check struct {
		what string
		msg  []byte
		ok   bool
	}
	var checks []check
	for _, name := range []string{"plain", "multipart", "folded", "whitespace", "resent"} {
		out := signed(t, testMessages[name], keys)
		checks = append(checks,
			check{name + " as signed", out, true},
			check{name + " white space re-folded", mangleWhitespace(t, out), true},
			check{name + " Subject added", insertField(out, "Subject: Your account is locked", true), false},
			check{name + " From added", insertField(out, "From: security@bank.example", false), false},
			check{name + " Sender added", insertField(out, "Sender: ceo@other-tenant.example", false), false},
			check{name + " Resent-From added", insertField(out, "Resent-From: ceo@other-tenant.example", true), false},
			check{name + " List-Unsubscribe-Post added", insertField(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click", false), false},
			check{name + " body changed", bytes.Replace(out, []byte("\r\n\r\n"), []byte("\r\n\r\nInjected line.\r\n"), 1), false},
		)
	}
	msgs := make([][]byte, len(checks))
	for i, c := range checks {
		msgs[i] = c.msg
	}
	wantA := []string{string(RSA), string(Ed25519)}
	for i, rs := range dkimpyVerify(t, zone, msgs...) {
		c := checks[i]
		if len(rs) != 2 {
			t.Errorf("%s: dkimpy saw %d signatures, want 2: %+v", c.what, len(rs), rs)
			continue
		}
		for j, r := range rs {
			if r.A != wantA[j] || r.D != "example.com" || r.S != keys[1-j].Selector {
				t.Errorf("%s: signature %d is a=%s d=%s s=%s, want a=%s d=example.com s=%s",
					c.what, j, r.A, r.D, r.S, wantA[j], keys[1-j].Selector)
			}
			if r.OK != c.ok {
				t.Errorf("%s: dkimpy says %s signature ok=%v (%s), want %v", c.what, r.A, r.OK, r.Error, c.ok)
			}
		}
	}

	// Each selector serving a key of the right algorithm, but not the one
	// that signed.
	other := fakeDNS{}
	r2, _ := TXTRecord(readPEM(t, "rsa1024-pkcs8.pem").Public())
	e2, _ := Generate(Ed25519)
	e2v, _ := TXTRecord(e2.Public())
	other[keys[1].Selector+"._domainkey.example.com"] = r2
	other[keys[0].Selector+"._domainkey.example.com"] = e2v
	rs := dkimpyVerify(t, other, checks[0].msg)[0]
	if len(rs) != 2 {
		t.Fatalf("dkimpy saw %d signatures", len(rs))
	}
	for _, r := range rs {
		if r.OK {
			t.Errorf("dkimpy accepts the %s signature with another key", r.A)
		}
	}
}
