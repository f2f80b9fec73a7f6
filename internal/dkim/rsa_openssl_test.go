//go:build cgo && !heed_purego

package dkim

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha512"
	"strings"
	"testing"
)

// TestOpenSSLIsTheDefault: where OpenSSL is built in, every RSA key Heed
// parses (stored keys, imported PEM files) signs through it.
func TestOpenSSLIsTheDefault(t *testing.T) {
	k, _ := testKeys(t)
	if _, ok := k.(*opensslRSA); !ok {
		t.Fatalf("ParsePEM made a %T, want the OpenSSL signer", k)
	}
	der, err := MarshalPrivate(k)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivate(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := back.(*opensslRSA); !ok {
		t.Fatalf("ParsePrivate made a %T, want the OpenSSL signer", back)
	}
	if !strings.HasPrefix(RSASigner(), "openssl (OpenSSL ") {
		t.Errorf("RSASigner() = %q", RSASigner())
	}
}

// TestOpenSSLSignerEdges: a digest of the wrong length is refused with a
// clear error rather than handed to OpenSSL, and what DKIM never asks for
// (another hash, PSS) still signs, through crypto/rsa.
func TestOpenSSLSignerEdges(t *testing.T) {
	k, _ := testKeys(t)
	if _, err := k.Sign(nil, []byte("short"), crypto.SHA256); err == nil || !strings.Contains(err.Error(), "SHA-256 digest") {
		t.Errorf("a 5-byte digest: %v", err)
	}
	d := sha512.Sum512([]byte("x"))
	got, err := k.Sign(nil, d[:], crypto.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rsa.SignPKCS1v15(nil, goRSA(t, k), crypto.SHA512, d[:])
	if !bytes.Equal(got, want) {
		t.Error("a SHA-512 signature differs from crypto/rsa's")
	}
}
