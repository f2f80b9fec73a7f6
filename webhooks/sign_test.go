package webhooks

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test vector published with Standard Webhooks (spec/standard-webhooks.md
// and the reference libraries' "sign function works" tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignVector(t *testing.T) {
	key, err := ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	// Verify accepts the vector at its own time.
	h := headers(vectorID, strconv.Itoa(vectorTimestamp), vectorSignature)
	if err := Verify(vectorSecret, h, []byte(vectorPayload), 5*time.Minute, time.Unix(vectorTimestamp, 0)); err != nil {
		t.Fatalf("Verify(vector) = %v", err)
	}
}

func TestSignatureHeader(t *testing.T) {
	k1, k2 := testKey(t), testKey(t)
	ts := time.Unix(1700000000, 0)
	body := []byte("{}")
	got := SignatureHeader([][]byte{k1, k2}, "evt_1", ts, body)
	want := Sign(k1, "evt_1", ts, body) + " " + Sign(k2, "evt_1", ts, body)
	if got != want {
		t.Fatalf("SignatureHeader = %q, want %q", got, want)
	}
	if got := SignatureHeader(nil, "evt_1", ts, body); got != "" {
		t.Fatalf("SignatureHeader(no keys) = %q, want empty", got)
	}
}

func TestNewSecretRoundTrip(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, SecretPrefix) {
		t.Fatalf("NewSecret = %q, want prefix %q", s, SecretPrefix)
	}
	key, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(NewSecret()) = %v", err)
	}
	if len(key) != 32 {
		t.Fatalf("key is %d bytes, want 32", len(key))
	}
	s2, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if s2 == s {
		t.Fatal("two calls of NewSecret returned the same secret")
	}
}

func TestParseSecret(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	raw := func(n int) string { return base64.RawStdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name    string
		secret  string
		wantLen int // 0: an error is expected
		errHas  string
	}{
		{"vector", vectorSecret, 24, ""},
		{"24 bytes", SecretPrefix + b64(24), 24, ""},
		{"64 bytes", SecretPrefix + b64(64), 64, ""},
		{"padded", SecretPrefix + b64(32), 32, ""},
		{"unpadded", SecretPrefix + raw(32), 32, ""},
		{"no prefix", b64(32), 0, "must start with"},
		{"wrong prefix", "whsk_" + b64(32), 0, "must start with"},
		{"bad base64", SecretPrefix + "not*base64!", 0, "base64"},
		{"url alphabet", SecretPrefix + strings.Repeat("_-", 22), 0, "base64"},
		{"empty key", SecretPrefix, 0, "0 bytes"},
		{"23 bytes", SecretPrefix + b64(23), 0, "23 bytes"},
		{"65 bytes", SecretPrefix + b64(65), 0, "65 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParseSecret(tt.secret)
			if tt.wantLen == 0 {
				if err == nil {
					t.Fatalf("ParseSecret(%q) = %d bytes, want error", tt.secret, len(key))
				}
				if !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("error %q does not mention %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSecret(%q) = %v", tt.secret, err)
			}
			if len(key) != tt.wantLen {
				t.Fatalf("key is %d bytes, want %d", len(key), tt.wantLen)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	oldSecret, newSecret := testSecret(t), testSecret(t)
	oldKey, _ := ParseSecret(oldSecret)
	newKey, _ := ParseSecret(newSecret)
	otherSecret := testSecret(t)

	now := time.Unix(1700000000, 0)
	const tol = 5 * time.Minute
	body := []byte(`{"type":"message.delivered","timestamp":"2023-11-14T22:13:20Z","data":{}}`)
	id := "evt_01HF"
	ts := strconv.FormatInt(now.Unix(), 10)
	rotation := SignatureHeader([][]byte{oldKey, newKey}, id, now, body)

	tests := []struct {
		name   string
		secret string
		h      http.Header
		body   []byte
		now    time.Time
		errHas string // "": must verify
	}{
		{"rotation old key", oldSecret, headers(id, ts, rotation), body, now, ""},
		{"rotation new key", newSecret, headers(id, ts, rotation), body, now, ""},
		{"other versions ignored", newSecret, headers(id, ts, "v1a,AAAA v2,xyz "+Sign(newKey, id, now, body)), body, now, ""},
		{"edge of tolerance, late", oldSecret, headers(id, ts, rotation), body, now.Add(tol), ""},
		{"edge of tolerance, early", oldSecret, headers(id, ts, rotation), body, now.Add(-tol), ""},
		{"tampered body", oldSecret, headers(id, ts, rotation), append(body[:len(body):len(body)], ' '), now, "no webhook signature matches"},
		{"tampered id", oldSecret, headers(id+"x", ts, rotation), body, now, "no webhook signature matches"},
		{"wrong secret", otherSecret, headers(id, ts, rotation), body, now, "no webhook signature matches"},
		{"bad secret", "nope", headers(id, ts, rotation), body, now, "must start with"},
		{"old timestamp", oldSecret, headers(id, ts, rotation), body, now.Add(tol + time.Second), "old"},
		{"future timestamp", oldSecret, headers(id, ts, rotation), body, now.Add(-tol - time.Second), "future"},
		{"huge timestamp", oldSecret, headers(id, "9223372036854775807", rotation), body, now, "future"},
		{"overflowing timestamp", oldSecret, headers(id, "99999999999999999999", rotation), body, now, "out of range"},
		{"signed timestamp", oldSecret, headers(id, "+"+ts, rotation), body, now, "not unix seconds"},
		{"missing id", oldSecret, headers("", ts, rotation), body, now, "webhook-id"},
		{"missing timestamp", oldSecret, headers(id, "", rotation), body, now, "webhook-timestamp"},
		{"missing signature", oldSecret, headers(id, ts, ""), body, now, "webhook-signature"},
		{"only other versions", oldSecret, headers(id, ts, "v2,"+strings.TrimPrefix(Sign(oldKey, id, now, body), "v1,")), body, now, "no v1 signature"},
		{"garbage signature", oldSecret, headers(id, ts, "v1,!!!! v1,"), body, now, "no webhook signature matches"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.h, tt.body, tol, tt.now)
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify = nil, want error mentioning %q", tt.errHas)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Verify = %q, want it to mention %q", err, tt.errHas)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzVerify.
	const now = 1700000000
	key, err := ParseSecret(vectorSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		// Arbitrary input never panics.
		_ = Verify(vectorSecret, headers(id, ts, sig), body, 5*time.Minute, time.Unix(now, 0))

		// A delivery signed with the key verifies, whatever id and body.
		if id == "" {
			return
		}
		at := time.Unix(now, 0)
		h := headers(id, strconv.FormatInt(now, 10), sig+" "+Sign(key, id, at, body))
		if err := Verify(vectorSecret, h, body, 5*time.Minute, at); err != nil {
			t.Fatalf("signed delivery id=%q body=%q: %v", id, body, err)
		}
	})
}

func headers(id, ts, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set("webhook-id", id)
	}
	if ts != "" {
		h.Set("webhook-timestamp", ts)
	}
	if sig != "" {
		h.Set("webhook-signature", sig)
	}
	return h
}

func testSecret(t *testing.T) string {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := ParseSecret(testSecret(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
