//go:build !cgo || heed_purego

package dkim

import (
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
)

// rsaSignerName says which RSA signer this build uses.
func rsaSignerName() string {
	if fips140.Enabled() {
		return "go (crypto/rsa, FIPS 140-3 mode)"
	}
	return "go (crypto/rsa)"
}

// fastRSA is the Go key itself in a build without OpenSSL.
func fastRSA(k *rsa.PrivateKey) (crypto.Signer, error) { return k, nil }
