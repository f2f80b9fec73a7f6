package suppression

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrBadToken is returned for a token or mailto local part that is not one
// Heed made: malformed, truncated, altered, or under a key the ring does
// not hold. Callers answer it the same way whatever the cause, so a forger
// learns nothing.
var ErrBadToken = errors.New("suppression: invalid unsubscribe token")

// Target is what an unsubscribe token names: one recipient of one list of
// one tenant.
type Target struct {
	Tenant  string
	List    string
	Address string
}

// The token is
//
//	base64url, no padding ( key id (1 byte) || nonce (24) || ciphertext+tag )
//
// with XChaCha20-Poly1305 over "tenant 0x00 list 0x00 address" and the key
// id as associated data. The nonce is synthetic, HMAC-SHA256 of key id and
// plaintext under its own subkey, cut to 24 bytes (the SIV construction):
// the same target under the same key always gives the same token, so a
// retried delivery carries the same link and a DKIM-signed header does not
// change between attempts, while the only thing the token reveals is
// whether two tokens name the same target. The AEAD makes it opaque (URLs
// end up in proxy logs; the address must not) and unforgeable, and
// verifies its tag in constant time.
const (
	nonceLen = chacha20poly1305.NonceSizeX
	tagLen   = chacha20poly1305.Overhead
	// minPlain is the shortest plaintext: three non-empty fields and two
	// separators.
	minPlain = 5
	// maxTokenLen is far above the longest valid token (ids of 63 octets,
	// an address of 254: about 570 characters).
	maxTokenLen = 1024
)

var tokenEnc = base64.RawURLEncoding.Strict()

// Token returns the token of t under the current key. The address is
// normalised first (as given when it does not normalise, in which case the
// store will not hold it either). Tenant and list ids never hold a 0x00;
// a target whose fields do yields a token that does not parse.
func (k *Keyring) Token(t Target) string {
	return k.token(k.current, t)
}

func (k *Keyring) token(id byte, t Target) string {
	sk := k.keys[id]
	addr := t.Address
	if n, err := Normalize(addr); err == nil {
		addr = n
	}
	pt := make([]byte, 0, len(t.Tenant)+len(t.List)+len(addr)+2)
	pt = append(append(append(append(append(pt, t.Tenant...), 0), t.List...), 0), addr...)
	nonce := sk.syntheticNonce(id, pt)
	out := make([]byte, 0, 1+nonceLen+len(pt)+tagLen)
	out = append(append(out, id), nonce...)
	out = sk.aead.Seal(out, nonce, pt, []byte{id}) // the key id, as associated data
	return tokenEnc.EncodeToString(out)
}

func (sk *subkeys) syntheticNonce(id byte, pt []byte) []byte {
	m := hmac.New(sha256.New, sk.nonce)
	m.Write([]byte{id})
	m.Write(pt)
	return m.Sum(nil)[:nonceLen]
}

// Parse returns the target of a token made by Token under any key of the
// ring, or ErrBadToken.
func (k *Keyring) Parse(tok string) (Target, error) {
	// The base64 decoder skips line breaks; a token with one is not one we
	// made (and would not re-encode to itself).
	if len(tok) > maxTokenLen || strings.ContainsAny(tok, "\r\n") {
		return Target{}, ErrBadToken
	}
	raw, err := tokenEnc.DecodeString(tok)
	if err != nil || len(raw) < 1+nonceLen+minPlain+tagLen {
		return Target{}, ErrBadToken
	}
	id := raw[0]
	sk := k.keys[id]
	if sk == nil {
		return Target{}, ErrBadToken
	}
	nonce := raw[1 : 1+nonceLen]
	pt, err := sk.aead.Open(nil, nonce, raw[1+nonceLen:], raw[:1])
	if err != nil {
		return Target{}, ErrBadToken
	}
	// Only the key holder can make a ciphertext that opens, and Token
	// always derives the nonce; checking it anyway makes "parses" and
	// "is what Token returns for this target" the same thing.
	if !hmac.Equal(sk.syntheticNonce(id, pt), nonce) {
		return Target{}, ErrBadToken
	}
	f := bytes.Split(pt, []byte{0})
	if len(f) != 3 || len(f[0]) == 0 || len(f[1]) == 0 || len(f[2]) == 0 {
		return Target{}, ErrBadToken
	}
	return Target{Tenant: string(f[0]), List: string(f[1]), Address: string(f[2])}, nil
}

// Mailto local parts. The List-Unsubscribe mailto URI must fit RFC 5321's
// 64-octet local part (section 4.5.3.1.1), too short for an encrypted
// address, so it names a delivery instead, as the VERP return path does:
//
//	u-<message id>-<recipient index>-<mac>
//
// mac is 60 bits of HMAC-SHA256 over message id and index, in lowercase
// base32: a forged address is refused before anything changes, and the
// whole local part survives MTAs that fold case (ParseMailto lowercases
// first). With Heed's 26-character message ids it is at most 61 octets.
// There is no key id in it (no room to spare); ParseMailto tries every key
// of the ring.
const mailtoMACLen = 12 // base32 characters: 60 bits

var mailtoEnc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

func (sk *subkeys) mailtoMAC(id string, idx int) string {
	m := hmac.New(sha256.New, sk.mailto)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(strconv.Itoa(idx)))
	return mailtoEnc.EncodeToString(m.Sum(nil)[:8])[:mailtoMACLen]
}

// MailtoLocal returns the mailto local part for recipient index (0 or more)
// of message messageID, under the current key. Message ids are compared
// without regard to case and must not contain '-' (Heed's never do).
func (k *Keyring) MailtoLocal(messageID string, index int) string {
	id := strings.ToLower(messageID)
	return "u-" + id + "-" + strconv.Itoa(index) + "-" + k.keys[k.current].mailtoMAC(id, index)
}

// ParseMailto returns the message id and recipient index of a mailto local
// part made by MailtoLocal under any key of the ring, in any case, or
// ErrBadToken.
func (k *Keyring) ParseMailto(local string) (messageID string, index int, err error) {
	// What MailtoLocal makes is ASCII; refusing the rest up front also
	// keeps Unicode case folding (the Kelvin sign lowercases to 'k') out.
	if len(local) > 64 || strings.ContainsFunc(local, func(r rune) bool { return r >= utf8.RuneSelf }) {
		return "", 0, ErrBadToken
	}
	parts := strings.Split(strings.ToLower(local), "-")
	if len(parts) != 4 || parts[0] != "u" || parts[1] == "" || len(parts[3]) != mailtoMACLen {
		return "", 0, ErrBadToken
	}
	idx, err := strconv.Atoi(parts[2])
	if err != nil || idx < 0 || strconv.Itoa(idx) != parts[2] {
		return "", 0, ErrBadToken
	}
	// Every key is tried, without stopping at a match, so the time taken
	// says nothing about which key (or whether one) matched.
	ok := false
	for _, kid := range k.ids {
		if hmac.Equal([]byte(k.keys[kid].mailtoMAC(parts[1], idx)), []byte(parts[3])) {
			ok = true
		}
	}
	if !ok {
		return "", 0, ErrBadToken
	}
	return parts[1], idx, nil
}
