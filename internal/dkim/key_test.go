package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGenerateMarshalParse(t *testing.T) {
	for _, alg := range []Algorithm{RSA, Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			k, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := AlgorithmOf(k.Public()); err != nil || got != alg {
				t.Fatalf("AlgorithmOf = %q, %v", got, err)
			}
			if rk, ok := k.(*rsa.PrivateKey); ok && rk.N.BitLen() != 2048 {
				t.Errorf("RSA key of %d bits, want 2048", rk.N.BitLen())
			}
			der, err := MarshalPrivate(k)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePrivate(der)
			if err != nil {
				t.Fatal(err)
			}
			if !k.(interface{ Equal(crypto.PrivateKey) bool }).Equal(goKeyOf(back)) {
				t.Error("key changed in the round trip")
			}
		})
	}
	if _, err := Generate("rsa-sha1"); err == nil {
		t.Error("Generate(rsa-sha1) succeeded")
	}
}

func TestParsePEM(t *testing.T) {
	rsa1, ed := testKeys(t) // PKCS#1 RSA, PKCS#8 Ed25519
	rsa8 := readPEM(t, "rsa2048-pkcs8.pem")
	if !goRSA(t, rsa1).Equal(goKeyOf(rsa8)) {
		t.Error("the PKCS#1 and PKCS#8 files of one key parse to different keys")
	}
	if _, ok := ed.(ed25519.PrivateKey); !ok {
		t.Errorf("Ed25519 key parsed as %T", ed)
	}
	if k := readPEM(t, "rsa1024-pkcs8.pem"); goRSA(t, k).N.BitLen() != 1024 {
		t.Error("1024-bit key not accepted on import (RFC 8301 allows it)")
	}
	// Each imported key survives storage.
	for _, k := range []crypto.Signer{rsa1, ed} {
		der, err := MarshalPrivate(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePrivate(der); err != nil {
			t.Fatal(err)
		}
	}

	refused := map[string]string{
		"rsa512-pkcs1.pem":      "512 bits",
		"rsa5120-pkcs1.pem":     "5120 bits",
		"p256-pkcs8.pem":        "ecdsa",
		"ed25519-encrypted.pem": "encrypted",
		"README.md":             "no PEM block",
	}
	for name, want := range refused {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePEM(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, want)
		}
	}
	two, _ := os.ReadFile(filepath.Join("testdata", "rsa2048-pkcs8.pem"))
	edPEM, _ := os.ReadFile(filepath.Join("testdata", "ed25519-pkcs8.pem"))
	if _, err := ParsePEM(append(two, edPEM...)); err == nil || !strings.Contains(err.Error(), "several") {
		t.Errorf("two keys in one paste: %v", err)
	}
	if _, err := ParsePrivate([]byte("not DER")); err == nil {
		t.Error("ParsePrivate accepted garbage")
	}
}

func TestTXTRecord(t *testing.T) {
	rsaKey, edKey := testKeys(t)

	v, err := TXTRecord(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(v, "v=DKIM1; k=rsa; p=")
	if !ok {
		t.Fatalf("RSA record %q", v)
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der) // SubjectPublicKeyInfo
	if err != nil || !goRSA(t, rsaKey).PublicKey.Equal(pub) {
		t.Errorf("RSA p= is not the key's SubjectPublicKeyInfo: %v", err)
	}
	if len(v) <= 255 {
		t.Errorf("a 2048-bit record of %d octets: SplitTXT's test below would prove nothing", len(v))
	}

	v, err = TXTRecord(edKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	p, ok = strings.CutPrefix(v, "v=DKIM1; k=ed25519; p=")
	if !ok {
		t.Fatalf("Ed25519 record %q", v)
	}
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil || len(raw) != 32 || !ed25519.PublicKey(raw).Equal(edKey.Public()) {
		t.Errorf("Ed25519 p= is not the raw 32-byte key (RFC 8463 section 4.2): %d bytes, %v", len(raw), err)
	}

	if _, err := TXTRecord(rsaKey); err == nil {
		t.Error("TXTRecord accepted a private key")
	}
}

func TestSplitTXT(t *testing.T) {
	rsaKey, _ := testKeys(t)
	long, _ := TXTRecord(rsaKey.Public())
	for _, v := range []string{"", "short", strings.Repeat("a", 255), strings.Repeat("b", 256), strings.Repeat("c", 765), long} {
		parts := SplitTXT(v)
		if len(parts) == 0 {
			t.Fatalf("%d octets: no strings", len(v))
		}
		for i, p := range parts {
			if len(p) > 255 {
				t.Errorf("%d octets: string %d has %d", len(v), i, len(p))
			}
			if i < len(parts)-1 && len(p) != 255 {
				t.Errorf("%d octets: string %d has %d, want full strings before the last", len(v), i, len(p))
			}
		}
		if strings.Join(parts, "") != v {
			t.Errorf("%d octets: parts do not join back", len(v))
		}
		if want := max(1, (len(v)+254)/255); len(parts) != want {
			t.Errorf("%d octets: %d strings, want %d", len(v), len(parts), want)
		}
	}
}

func TestNewSelector(t *testing.T) {
	now := time.Date(2026, 11, 23, 23, 30, 0, 0, time.FixedZone("x", -5*3600))
	label := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	seen := map[string]bool{}
	for _, tt := range []struct {
		alg    Algorithm
		prefix string
	}{{RSA, "heed-r-20261124-"}, {Ed25519, "heed-e-20261124-"}, {"other", "heed-x-20261124-"}} {
		for range 50 {
			s := NewSelector(tt.alg, now) // dated in UTC: the 24th
			if !strings.HasPrefix(s, tt.prefix) || !label.MatchString(s) || !isDomainName(s) {
				t.Errorf("selector %q: want %q... and one lowercase DNS label", s, tt.prefix)
			}
			if seen[s] {
				t.Errorf("selector %q made twice", s)
			}
			seen[s] = true
		}
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"rsa": RSA, "RSA": RSA, "rsa-sha256": RSA, "ed25519": Ed25519, "Ed25519-SHA256": Ed25519} {
		if got, ok := ParseAlgorithm(in); !ok || got != want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "rsa-sha1", "dsa", "ed448"} {
		if got, ok := ParseAlgorithm(in); ok {
			t.Errorf("ParseAlgorithm(%q) = %q, want refused", in, got)
		}
	}
}
