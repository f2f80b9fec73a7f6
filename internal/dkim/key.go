package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Algorithm is a DKIM signing algorithm, spelled as in the a= tag.
type Algorithm string

// The two algorithms Heed signs with. rsa-sha1 is not offered: RFC 8301
// section 3.1 forbids it.
const (
	RSA     Algorithm = "rsa-sha256"     // RFC 6376, with RFC 8301's key sizes
	Ed25519 Algorithm = "ed25519-sha256" // RFC 8463
)

// ParseAlgorithm reads an algorithm as an operator names it: "rsa" or
// "ed25519" (or the a= tag's "rsa-sha256", "ed25519-sha256"), in any case.
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch strings.ToLower(s) {
	case "rsa", string(RSA):
		return RSA, true
	case "ed25519", string(Ed25519):
		return Ed25519, true
	}
	return "", false
}

// Key sizes. RFC 8301 section 3.2: signers MUST use at least 1024 bits and
// SHOULD use at least 2048; verifiers need only handle up to 4096, so a
// longer key risks signatures nobody checks (and a TXT record too long for
// many DNS control panels).
const (
	rsaGenerateBits = 2048
	rsaMinBits      = 1024
	rsaMaxBits      = 4096
)

// Key is one signing key of a domain: the signature it makes carries
// d=Domain and s=Selector, and verifiers find the public half at
// <Selector>._domainkey.<Domain>.
type Key struct {
	Domain    string // the SDID, an A-label (punycode) domain name
	Selector  string
	Algorithm Algorithm
	// Signer is what ParsePrivate or ParsePEM returned: for RSA, the
	// build's RSA signer (see RSASigner) or an *rsa.PrivateKey; for
	// Ed25519, an ed25519.PrivateKey.
	Signer crypto.Signer
}

// Generate makes a new private key for alg: RSA-2048 (RFC 8301's SHOULD,
// and what every receiver verifies) or Ed25519.
func Generate(alg Algorithm) (crypto.Signer, error) {
	switch alg {
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, rsaGenerateBits)
		if err != nil {
			return nil, fmt.Errorf("dkim: generate RSA key: %w", err)
		}
		return k, nil
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dkim: generate Ed25519 key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("dkim: unknown algorithm %q", alg)
}

// AlgorithmOf returns the DKIM algorithm a key signs with, or an error for
// a key type DKIM does not define or an RSA key of a size outside RFC
// 8301's range.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < rsaMinBits || bits > rsaMaxBits {
			return "", fmt.Errorf("dkim: RSA key of %d bits, want %d to %d (RFC 8301 section 3.2)",
				bits, rsaMinBits, rsaMaxBits)
		}
		return RSA, nil
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return "", fmt.Errorf("dkim: Ed25519 public key of %d bytes", len(pub))
		}
		return Ed25519, nil
	}
	return "", fmt.Errorf("dkim: %T keys cannot sign DKIM (RSA or Ed25519 only)", pub)
}

// MarshalPrivate encodes a private key as PKCS#8 DER, the one form used for
// both algorithms, for storage.
func MarshalPrivate(k crypto.Signer) ([]byte, error) {
	if k == nil {
		return nil, errors.New("dkim: no key")
	}
	if w, ok := k.(interface{ goKey() crypto.Signer }); ok {
		k = w.goKey() // x509 knows only Go's key types
	}
	if _, err := AlgorithmOf(k.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("dkim: marshal private key: %w", err)
	}
	return der, nil
}

// ParsePrivate decodes a PKCS#8 DER private key, as MarshalPrivate writes
// it. RSA keys of 1024 to 4096 bits are accepted, so that a key an operator
// imported (RFC 8301 allows 1024) keeps working; Generate makes 2048.
//
// An RSA key comes back as the build's RSA signer (RSASigner): loaded into
// OpenSSL here, once, where OpenSSL is built in. Callers keep the result
// for as long as they sign with the key (internal/tenant caches it per
// selector) rather than parse it per message.
func ParsePrivate(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("dkim: parse private key: %w", err)
	}
	return checkSigner(k)
}

// ParsePEM decodes a private key an operator imports: the first PEM block
// of pemBytes, "PRIVATE KEY" (PKCS#8, RSA or Ed25519) or "RSA PRIVATE KEY"
// (PKCS#1, what `openssl genrsa -traditional` and older tools write).
// Encrypted keys are refused: decrypt them first (`openssl pkcs8`).
func ParsePEM(pemBytes []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("dkim: no PEM block found")
	}
	// A second key in the paste would leave the operator unsure which one
	// was imported; say so rather than pick.
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, errors.New("dkim: several PEM blocks; import one key at a time")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		if _, encrypted := block.Headers["Proc-Type"]; encrypted {
			return nil, errors.New("dkim: encrypted PEM key; decrypt it first")
		}
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("dkim: encrypted PEM key; decrypt it first")
	default:
		return nil, fmt.Errorf("dkim: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: parse %s: %w", block.Type, err)
	}
	return checkSigner(k)
}

// checkSigner accepts only the key types and sizes DKIM can use, and
// hands RSA keys to the build's RSA signer.
func checkSigner(k any) (crypto.Signer, error) {
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim: %T keys cannot sign", k)
	}
	if _, err := AlgorithmOf(s.Public()); err != nil {
		return nil, err
	}
	if r, ok := s.(*rsa.PrivateKey); ok {
		return fastRSA(r)
	}
	return s, nil
}

// TXTRecord returns the value of the DNS TXT record that publishes pub at
// <selector>._domainkey.<domain> (RFC 6376 section 3.6.1).
//
// RSA keys go as the base64 SubjectPublicKeyInfo DER (what RFC 6376 and
// every verifier expect); Ed25519 keys as the raw 32-byte key, not wrapped
// in SubjectPublicKeyInfo (RFC 8463 section 4.2).
//
// A 2048-bit RSA value is about 410 octets, longer than the 255 octets of
// one DNS character-string: it must be published as several
// character-strings in ONE TXT record (which verifiers concatenate, RFC
// 6376 section 3.6.2.2), not as several records. SplitTXT cuts it.
func TXTRecord(pub crypto.PublicKey) (string, error) {
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return "", err
	}
	var k string
	var raw []byte
	switch alg {
	case RSA:
		k = "rsa"
		raw, err = x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: marshal public key: %w", err)
		}
	case Ed25519:
		k = "ed25519"
		raw = pub.(ed25519.PublicKey)
	}
	return "v=DKIM1; k=" + k + "; p=" + base64.StdEncoding.EncodeToString(raw), nil
}

// maxCharString is the longest DNS character-string (RFC 1035 section
// 3.3: one length octet).
const maxCharString = 255

// SplitTXT cuts a TXT value into character-strings of at most 255 octets,
// to be published together as one record. Cutting anywhere is safe: the
// strings are joined with nothing between them (RFC 6376 section 3.6.2.2).
// An empty value gives one empty string, as a TXT record needs one.
func SplitTXT(value string) []string {
	parts := make([]string, 0, len(value)/maxCharString+1)
	for len(value) > maxCharString {
		parts = append(parts, value[:maxCharString])
		value = value[maxCharString:]
	}
	return append(parts, value)
}

// NewSelector returns a new selector for a key of algorithm alg made at
// now, such as "heed-r-20261123-x7k2ab" (RSA) or "heed-e-20261123-x7k2ab"
// (Ed25519): one DNS label that tells an operator reading the zone which
// key it is and when it was made, with 30 random bits so that rotating
// twice in a day never reuses a selector (a reused selector would make
// mail signed with the old key fail once the new one is published). An
// algorithm other than RSA and Ed25519 gets the letter "x".
func NewSelector(alg Algorithm, now time.Time) string {
	letter := "x"
	switch alg {
	case RSA:
		letter = "r"
	case Ed25519:
		letter = "e"
	}
	// rand.Text is base32 (A-Z, 2-7); lowercase because DNS is
	// case-insensitive and operators copy selectors by hand.
	suffix := strings.ToLower(rand.Text()[:6])
	return "heed-" + letter + "-" + now.UTC().Format("20060102") + "-" + suffix
}
