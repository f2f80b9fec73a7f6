package dkim

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/heedmail/heed/internal/dkim/dkimtest"
)

// namedSigner is one RSA signer under test.
type namedSigner struct {
	name string
	s    crypto.Signer
}

// rsaSigners returns every RSA signer of this build over the committed
// test key: crypto/rsa, and the build's default signer when it is another
// one (OpenSSL where cgo is on).
func rsaSigners(t testing.TB) []namedSigner {
	t.Helper()
	parsed, _ := testKeys(t)
	out := []namedSigner{{"go", goRSA(t, parsed)}}
	if _, plain := parsed.(*rsa.PrivateKey); !plain {
		out = append(out, namedSigner{RSASigner(), parsed})
	}
	return out
}

// TestRSASignersAgree: RSA PKCS#1 v1.5 is deterministic (RFC 8017 section
// 8.2.1), so every signer must produce crypto/rsa's signature byte for
// byte, and a signer that pads, hashes or encodes differently shows here
// on the first digest. Several goroutines share each key, as the queue's
// workers do (the race detector watches the Go side; OpenSSL's side must
// give the same bytes under contention).
func TestRSASignersAgree(t *testing.T) {
	signers := rsaSigners(t)
	ref := signers[0].s.(*rsa.PrivateKey)
	var wg sync.WaitGroup
	for _, ns := range signers {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 16 {
					digest := sha256.Sum256(fmt.Appendf(nil, "message %d of goroutine %d", i, g))
					want, err := rsa.SignPKCS1v15(nil, ref, crypto.SHA256, digest[:])
					if err != nil {
						t.Error(err)
						return
					}
					got, err := ns.s.Sign(nil, digest[:], crypto.SHA256)
					if err != nil {
						t.Errorf("%s: %v", ns.name, err)
						return
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%s: signature of digest %d differs from crypto/rsa's", ns.name, i)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
}

// signedWith signs msg with the RSA signer s and the Ed25519 test key, and
// returns the signed message and its RSA signature's tags.
func signedWith(t testing.TB, msg []byte, s crypto.Signer) ([]byte, map[string]string) {
	t.Helper()
	_, ed := testKeys(t)
	keys := []Key{
		{Domain: "example.com", Selector: "heed-r-20261123-abcdef", Algorithm: RSA, Signer: s},
		{Domain: "example.com", Selector: "heed-e-20261123-abcdef", Algorithm: Ed25519, Signer: ed},
	}
	out := signed(t, msg, keys)
	return out, signatureTags(t, out)[0]
}

// TestEverySignerVerifies signs each test message with every RSA signer
// and has both Heed's verifier (go-msgauth) and dkimpy check each
// signature; where two signers signed in the same second (same t=), their
// DKIM-Signature fields must be the same bytes: the same canonicalisation,
// the same b=.
func TestEverySignerVerifies(t *testing.T) {
	dkimtest.Require(t)
	signers := rsaSigners(t)
	zone := publish(t, signingKeys(t))
	var msgs [][]byte
	var what []string
	for name, m := range testMessages {
		var first map[string]string
		for _, ns := range signers {
			out, tags := signedWith(t, m, ns.s)
			// Sign again until both carry the same t=: the clock may have
			// ticked between two signers.
			for range 3 {
				if first == nil || tags["t"] == first["t"] {
					break
				}
				out, tags = signedWith(t, m, ns.s)
			}
			if first == nil {
				first = tags
			} else if tags["t"] == first["t"] && (tags["b"] != first["b"] || tags["bh"] != first["bh"] || tags["h"] != first["h"]) {
				t.Errorf("%s: %s's RSA signature differs from crypto/rsa's:\n%v\n%v", name, ns.name, tags, first)
			}
			rs, err := Verify(out, zone.lookupTXT)
			if err != nil || len(rs) != 2 || rs[0].Err != nil || rs[1].Err != nil {
				t.Errorf("%s signed by %s: Heed's verifier: %v %s", name, ns.name, err, describe(rs))
			}
			msgs = append(msgs, out)
			what = append(what, name+" by "+ns.name)
		}
	}
	for i, rs := range dkimpyVerify(t, zone, msgs...) {
		if len(rs) != 2 {
			t.Errorf("%s: dkimpy saw %d signatures", what[i], len(rs))
			continue
		}
		for _, r := range rs {
			if !r.OK {
				t.Errorf("%s: dkimpy rejects the %s signature: %s", what[i], r.A, r.Error)
			}
		}
	}
}

// TestRSASignerName: what `heed version` prints names the signer this
// build signs with.
func TestRSASignerName(t *testing.T) {
	parsed, _ := testKeys(t)
	_, plain := parsed.(*rsa.PrivateKey)
	name := RSASigner()
	if plain != strings.HasPrefix(name, "go ") || !plain && !strings.Contains(name, "OpenSSL") {
		t.Errorf("RSASigner() = %q, but ParsePEM made a %T", name, parsed)
	}
}
