package webhooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signing follows Standard Webhooks v1 (https://www.standardwebhooks.com/,
// spec/standard-webhooks.md "Signature scheme"): the signed content is
// id + "." + timestamp + "." + body, the signature is HMAC-SHA256 keyed with
// the base64-decoded part of a "whsec_" secret, and the webhook-signature
// header carries space-separated "v1,<base64>" entries so that a receiver can
// accept either key while a secret is being rotated.

// SecretPrefix is the prefix of endpoint secrets.
const SecretPrefix = "whsec_"

// Header names of Standard Webhooks. http.Header canonicalises them, so the
// case used here does not matter on either side.
const (
	headerID        = "webhook-id"
	headerTimestamp = "webhook-timestamp"
	headerSignature = "webhook-signature"
)

// Key sizes the spec allows for a secret (between 24 and 64 bytes).
const (
	minKeyLen = 24
	maxKeyLen = 64
	newKeyLen = 32
)

// NewSecret returns a fresh endpoint secret: SecretPrefix followed by the
// padded standard base64 of 32 random bytes from crypto/rand.
func NewSecret() (string, error) {
	key := make([]byte, newKeyLen)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// ParseSecret returns the HMAC key of a secret. The secret must start with
// SecretPrefix; the rest is standard base64, with or without padding, and
// must decode to 24 to 64 bytes.
func ParseSecret(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("webhook secret must start with %q", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		var rawErr error
		key, rawErr = base64.RawStdEncoding.DecodeString(enc)
		if rawErr != nil {
			return nil, fmt.Errorf("webhook secret after %q is not valid base64: %w", SecretPrefix, err)
		}
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, fmt.Errorf("webhook secret key is %d bytes, must be %d to %d", len(key), minKeyLen, maxKeyLen)
	}
	return key, nil
}

// Sign returns one signature, "v1," followed by the standard base64 of
// HMAC-SHA256(key, id + "." + unix seconds of ts + "." + body).
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body))
}

// SignatureHeader returns the webhook-signature header value for several
// keys, as sent while a secret is rotated: one signature per key, in the
// order of keys, separated by one space.
func SignatureHeader(keys [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// mac computes the raw HMAC over the signed content. The timestamp is passed
// as the exact text that is (or was) in the webhook-timestamp header.
func mac(key []byte, id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery as a receiver would. It reads the webhook-id,
// webhook-timestamp and webhook-signature headers of h, requires the
// timestamp to be within tolerance of now (in either direction, which bounds
// replays), and accepts the delivery when one of the space-separated "v1,..."
// signatures matches under secret; signatures of other versions are ignored.
// The returned error says which check failed.
func Verify(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := ParseSecret(secret)
	if err != nil {
		return err
	}
	id := h.Get(headerID)
	if id == "" {
		return errors.New("missing webhook-id header")
	}
	tsText := h.Get(headerTimestamp)
	if tsText == "" {
		return errors.New("missing webhook-timestamp header")
	}
	sigHeader := h.Get(headerSignature)
	if sigHeader == "" {
		return errors.New("missing webhook-signature header")
	}
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return err
	}
	if err := checkTimestamp(ts, now, tolerance); err != nil {
		return err
	}

	want := mac(key, id, tsText, body)
	sawV1 := false
	for sig := range strings.SplitSeq(sigHeader, " ") {
		version, enc, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		sawV1 = true
		got, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	if !sawV1 {
		return errors.New("webhook-signature header has no v1 signature")
	}
	return errors.New("no webhook signature matches the secret")
}

// parseTimestamp parses unix seconds written as plain ASCII digits; signs,
// spaces and fractions are refused so that the signed text is unambiguous.
func parseTimestamp(s string) (int64, error) {
	if len(s) > 19 {
		return 0, fmt.Errorf("webhook-timestamp %.32q is out of range", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("webhook-timestamp %.32q is not unix seconds", s)
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("webhook-timestamp %.32q is out of range", s)
	}
	return ts, nil
}

// checkTimestamp compares in whole seconds, without building a time.Time
// from the untrusted value, so that huge values cannot overflow.
func checkTimestamp(ts int64, now time.Time, tolerance time.Duration) error {
	limit := int64(tolerance / time.Second)
	if limit < 0 {
		limit = 0
	}
	nowSec := now.Unix()
	// ts >= 0, so nowSec-ts cannot overflow unless nowSec is hugely negative.
	if nowSec < 0 {
		return errors.New("webhook verification clock is before 1970")
	}
	switch diff := nowSec - ts; {
	case diff > limit:
		return fmt.Errorf("webhook-timestamp is %ds old, tolerance is %ds", diff, limit)
	case -diff > limit:
		return fmt.Errorf("webhook-timestamp is %ds in the future, tolerance is %ds", -diff, limit)
	}
	return nil
}
