//go:build cgo && !heed_purego

package dkim

// The OpenSSL signer: RSA signatures made by the system's libcrypto
// (Debian's libssl-dev to build, libssl3 to run) through cgo.
//
// Which OpenSSL calls, and why these:
//
//   - d2i_PrivateKey(EVP_PKEY_RSA, ...) loads the key once, from the
//     PKCS#1 DER of the Go key, when the key is parsed (ParsePrivate,
//     ParsePEM). The DER is a transient copy, cleared as soon as OpenSSL
//     has read it; OpenSSL keeps its own copy in the EVP_PKEY, which is
//     freed (EVP_PKEY_free) by a cleanup once the signer is unreachable.
//   - each signature gets a fresh EVP_PKEY_CTX (EVP_PKEY_CTX_new,
//     EVP_PKEY_sign_init, PKCS#1 v1.5 padding, SHA-256, EVP_PKEY_sign,
//     EVP_PKEY_CTX_free). An EVP_PKEY is safe to use from several threads
//     at once as long as each has its own EVP_PKEY_CTX (OpenSSL 3's
//     threading rules, openssl-threads(7)): a context per call is what
//     lets the queue's workers sign concurrently with one loaded key.
//   - errors come from OpenSSL's error queue. The queue is per thread and
//     a goroutine may change threads between two cgo calls, so the C side
//     takes the error code and clears the queue in the same call that
//     failed.
//
// The digest is signed as given (EVP_PKEY_sign, not EVP_DigestSign): the
// DKIM library hashes the canonicalised header itself and hands over the
// SHA-256 digest, as it does to crypto/rsa.

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

// heed_load_rsa reads a PKCS#1 RSAPrivateKey; NULL and *err set on failure.
static EVP_PKEY *heed_load_rsa(const unsigned char *der, long len, unsigned long *err) {
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
	*err = k == NULL ? ERR_peek_last_error() : 0;
	ERR_clear_error();
	return k;
}

// heed_sign_sha256 signs a SHA-256 digest with PKCS#1 v1.5 padding
// (RFC 8017 section 8.2.1, what rsa-sha256 is, RFC 6376 section 3.3.1).
static int heed_sign_sha256(EVP_PKEY *k, const unsigned char *digest, size_t dlen,
		unsigned char *sig, size_t *siglen, unsigned long *err) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	int ok = ctx != NULL
		&& EVP_PKEY_sign_init(ctx) > 0
		&& EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0
		&& EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0
		&& EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) > 0;
	EVP_PKEY_CTX_free(ctx);
	*err = ok ? 0 : ERR_peek_last_error();
	ERR_clear_error();
	return ok;
}

static void heed_error_string(unsigned long e, char *buf, size_t len) {
	ERR_error_string_n(e, buf, len);
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"
)

// rsaSignerName says which RSA signer this build uses.
func rsaSignerName() string {
	return "openssl (" + C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION)) + ", cgo)"
}

// opensslRSA is an RSA key whose SHA-256 PKCS#1 v1.5 signatures OpenSSL
// makes. It keeps the Go key for the public half, for storage
// (MarshalPrivate) and for the signatures OpenSSL is not asked for.
type opensslRSA struct {
	key  *rsa.PrivateKey
	pkey *C.EVP_PKEY
}

// fastRSA loads k into OpenSSL once. The returned signer's EVP_PKEY is
// freed by a cleanup when the signer becomes unreachable.
func fastRSA(k *rsa.PrivateKey) (crypto.Signer, error) {
	der := x509.MarshalPKCS1PrivateKey(k)
	defer clear(der) // OpenSSL has its own copy; leave none of ours about
	var e C.ulong
	pkey := C.heed_load_rsa((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &e)
	if pkey == nil {
		return nil, fmt.Errorf("dkim: loading the RSA key into OpenSSL: %w", opensslError(e))
	}
	s := &opensslRSA{key: k, pkey: pkey}
	runtime.AddCleanup(s, func(p *C.EVP_PKEY) { C.EVP_PKEY_free(p) }, pkey)
	return s, nil
}

// Public returns the *rsa.PublicKey.
func (s *opensslRSA) Public() crypto.PublicKey { return &s.key.PublicKey }

// goKey returns the Go key, for MarshalPrivate.
func (s *opensslRSA) goKey() crypto.Signer { return s.key }

// Sign signs a SHA-256 digest with PKCS#1 v1.5 through OpenSSL; anything
// else (PSS, another hash) DKIM never asks for and is left to crypto/rsa.
// rand is not used: PKCS#1 v1.5 is deterministic, and OpenSSL's blinding
// draws from its own generator.
func (s *opensslRSA) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss || opts.HashFunc() != crypto.SHA256 {
		return s.key.Sign(rand, digest, opts)
	}
	if len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("dkim: a SHA-256 digest is %d bytes, not %d", crypto.SHA256.Size(), len(digest))
	}
	sig := make([]byte, s.key.Size())
	n := C.size_t(len(sig))
	var e C.ulong
	ok := C.heed_sign_sha256(s.pkey, (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &n, &e)
	// The cleanup must not free the key while OpenSSL signs with it.
	runtime.KeepAlive(s)
	if ok == 0 {
		return nil, fmt.Errorf("dkim: OpenSSL RSA signature: %w", opensslError(e))
	}
	return sig[:n], nil
}

// opensslError turns an error code from OpenSSL's error queue into a Go
// error with OpenSSL's own text.
func opensslError(e C.ulong) error {
	if e == 0 {
		return errors.New("OpenSSL failed without an error code")
	}
	var buf [256]C.char
	C.heed_error_string(e, &buf[0], C.size_t(len(buf)))
	return errors.New(C.GoString(&buf[0]))
}
