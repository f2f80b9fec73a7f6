package dkim

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzSign feeds Sign the messages an app could send. Whatever Sign
// accepts must verify, and must stop verifying once a From field is added
// on top: the over-signing of From has to hold for every header HeaderKeys
// counts, not only for well-formed ones. Ed25519 keeps each run cheap.
func FuzzSign(f *testing.F) {
	for _, m := range testMessages {
		f.Add(m)
	}
	f.Add([]byte("From: a@example.com\n\nLF only\n"))
	f.Add([]byte("From: a@example.com\r\n \r\nSubject: x\r\n\r\n"))
	_, edKey := testKeys(f)
	keys := []Key{{Domain: "example.com", Selector: "fuzz", Algorithm: Ed25519, Signer: edKey}}
	zone := publish(f, keys)
	f.Fuzz(func(t *testing.T, msg []byte) {
		sigs, err := Sign(msg, keys)
		if err != nil {
			return
		}
		out := append([]byte(sigs), msg...)
		rs, err := Verify(out, zone.lookupTXT)
		if err != nil || len(rs) != 1 || rs[0].Err != nil {
			t.Fatalf("signed message does not verify: %v %s\n%q", err, describe(rs), out)
		}
		forged := append([]byte("From: x@evil.example\r\n"), out...)
		if rs, err := Verify(forged, zone.lookupTXT); err == nil && len(rs) == 1 && rs[0].Err == nil {
			t.Fatalf("a From added on top does not break the signature:\n%q", forged)
		}
	})
}

// FuzzParsePEM feeds ParsePEM what an operator could paste.
func FuzzParsePEM(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join("testdata", "*.pem"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePEM(b)
		if err != nil {
			return
		}
		if _, err := AlgorithmOf(k.Public()); err != nil {
			t.Fatalf("accepted a key DKIM cannot use: %v", err)
		}
		der, err := MarshalPrivate(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePrivate(der); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzSigners signs what an app could send with the RSA key through every
// signer of the build (crypto/rsa, and OpenSSL where it is built in):
// each signature must verify, and two signers that signed in the same
// second must have written the same DKIM-Signature, byte for byte.
func FuzzSigners(f *testing.F) {
	for _, m := range testMessages {
		f.Add(m)
	}
	f.Add([]byte("From: a@example.com\r\nSubject: \xff\xfe\r\n\r\n\r\n\r\n"))
	signers := rsaSigners(f)
	keys := make([][]Key, len(signers))
	for i, ns := range signers {
		keys[i] = []Key{{Domain: "example.com", Selector: "fuzz", Algorithm: RSA, Signer: ns.s}}
	}
	zone := publish(f, keys[0])
	f.Fuzz(func(t *testing.T, msg []byte) {
		var first string
		for i, ks := range keys {
			sig, err := Sign(msg, ks)
			if err != nil {
				return // refused alike by every signer: HeaderKeys decides
			}
			out := append([]byte(sig), msg...)
			rs, err := Verify(out, zone.lookupTXT)
			if err != nil || len(rs) != 1 || rs[0].Err != nil {
				t.Fatalf("signed by %s, does not verify: %v %s\n%q", signers[i].name, err, describe(rs), out)
			}
			tags := parseTags(sig[len("DKIM-Signature:"):])
			if first == "" {
				first = sig
			} else if ft := parseTags(first[len("DKIM-Signature:"):]); ft["t"] == tags["t"] && first != sig {
				t.Fatalf("%s and %s signed differently:\n%s\n%s", signers[0].name, signers[i].name, first, sig)
			}
		}
	})
}
