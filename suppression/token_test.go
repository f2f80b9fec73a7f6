package suppression

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/ids"
)

var (
	key1 = bytes.Repeat([]byte{1}, KeySize)
	key2 = bytes.Repeat([]byte{2}, KeySize)
)

func ring(t testing.TB, current byte, keys map[byte][]byte) *Keyring {
	t.Helper()
	k, err := newKeyring(current, keys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var bob = Target{Tenant: "acme", List: "news", Address: "bob.smith@example.com"}

func TestTokenRoundTrip(t *testing.T) {
	k := ring(t, 1, map[byte][]byte{1: key1})
	tok := k.Token(bob)
	got, err := k.Parse(tok)
	if err != nil || got != bob {
		t.Fatalf("Parse(Token(%+v)) = %+v, %v", bob, got, err)
	}
	// Deterministic: a retried delivery carries the same link.
	if again := k.Token(bob); again != tok {
		t.Errorf("Token is not deterministic: %q then %q", tok, again)
	}
	// The address is normalised: every spelling gives the one token.
	if other := k.Token(Target{Tenant: "acme", List: "news", Address: " Bob.Smith@EXAMPLE.com"}); other != tok {
		t.Error("two spellings of one address give two tokens")
	}
	// Bound to tenant, list and recipient.
	for _, o := range []Target{
		{Tenant: "globex", List: "news", Address: bob.Address},
		{Tenant: "acme", List: "promo", Address: bob.Address},
		{Tenant: "acme", List: "news", Address: "ann@example.com"},
	} {
		if k.Token(o) == tok {
			t.Errorf("%+v has bob's token", o)
		}
	}
	// URL-safe without escaping.
	if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("token %q has characters outside base64url", tok)
	}
}

// TestTokenGolden: tokens and mailto addresses already in people's
// mailboxes must keep working, so the format (layout, HKDF info strings,
// algorithms) may not drift. These were made by this code under key1; a
// change that breaks them needs a new token version, not a new test value.
func TestTokenGolden(t *testing.T) {
	k := ring(t, 1, map[byte][]byte{1: key1})
	const tok = "AduO6n-RLVOsA29dbnAqunnwHPYz9UYcXZ6IjcXEsZLqYZV_nKmwPjbpNnCjoaPW7EpsxA8MTRi2CrQz5zZn6YF1UmLm4jSP"
	if got, err := k.Parse(tok); err != nil || got != bob {
		t.Errorf("Parse(golden) = %+v, %v", got, err)
	}
	if got := k.Token(bob); got != tok {
		t.Errorf("Token(bob) = %q, want the golden %q", got, tok)
	}
	const local = "u-01jq3z6k9x8v7w6t5s4r3q2p1n-0-sk0h1fd7ev82"
	if got := k.MailtoLocal("01jq3z6k9x8v7w6t5s4r3q2p1n", 0); got != local {
		t.Errorf("MailtoLocal = %q, want the golden %q", got, local)
	}
}

// TestTokenOpaque: the address cannot be read from the URL (proxy logs).
func TestTokenOpaque(t *testing.T) {
	k := ring(t, 1, map[byte][]byte{1: key1})
	tok := k.Token(bob)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"bob.smith@example.com", "bob.smith", "example.com", "smith"} {
		if bytes.Contains(raw, []byte(secret)) || strings.Contains(strings.ToLower(tok), secret) {
			t.Errorf("%q is readable from the token", secret)
		}
		enc := base64.RawURLEncoding.EncodeToString([]byte(secret))
		if strings.Contains(tok, enc[:len(enc)-1]) {
			t.Errorf("%q appears base64-encoded in the token", secret)
		}
	}
}

// TestTokenTamper: any change to a token makes it invalid; none panics.
func TestTokenTamper(t *testing.T) {
	k := ring(t, 1, map[byte][]byte{1: key1})
	tok := k.Token(bob)
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(raw)
			bad[i] ^= mask
			if got, err := k.Parse(base64.RawURLEncoding.EncodeToString(bad)); !errors.Is(err, ErrBadToken) {
				t.Errorf("byte %d ^ %#x: Parse = %+v, %v", i, mask, got, err)
			}
		}
	}
	for i := range len(tok) {
		if _, err := k.Parse(tok[:i]); !errors.Is(err, ErrBadToken) {
			t.Errorf("token cut to %d characters: %v", i, err)
		}
		// Each character replaced, in the alphabet or not.
		for _, c := range []byte{'A', '_', '=', '.', '\n'} {
			if tok[i] == c {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if _, err := k.Parse(bad); !errors.Is(err, ErrBadToken) {
				t.Errorf("character %d replaced by %q: %v", i, c, err)
			}
		}
	}
	for _, bad := range []string{tok + "A", tok + "\n", "\n" + tok, tok[:10] + "\r\n" + tok[10:], strings.Repeat("A", 5000)} {
		if _, err := k.Parse(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("Parse(%.40q...) = %v", bad, err)
		}
	}
}

func TestTokenRotation(t *testing.T) {
	old := ring(t, 1, map[byte][]byte{1: key1})
	tok1 := old.Token(bob)
	rotated := ring(t, 2, map[byte][]byte{1: key1, 2: key2})
	if got, err := rotated.Parse(tok1); err != nil || got != bob {
		t.Errorf("a key-1 token after rotation: %+v, %v", got, err)
	}
	tok2 := rotated.Token(bob)
	if tok2 == tok1 {
		t.Error("the rotated ring still makes key-1 tokens")
	}
	if got, err := rotated.Parse(tok2); err != nil || got != bob {
		t.Errorf("a key-2 token: %+v, %v", got, err)
	}
	// A ring that lost key 1 refuses its tokens.
	only2 := ring(t, 2, map[byte][]byte{2: key2})
	if _, err := only2.Parse(tok1); !errors.Is(err, ErrBadToken) {
		t.Errorf("a token of an unknown key: %v", err)
	}
	// The same key under another id is another key: the id is bound in.
	swapped := ring(t, 3, map[byte][]byte{3: key1})
	if _, err := swapped.Parse(tok1); !errors.Is(err, ErrBadToken) {
		t.Errorf("a key-1 token parsed under id 3: %v", err)
	}
}

func TestNewKeyringRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		current byte
		keys    map[byte][]byte
	}{
		"id 0":           {0, map[byte][]byte{0: key1}},
		"short key":      {1, map[byte][]byte{1: key1[:16]}},
		"current absent": {2, map[byte][]byte{1: key1}},
		"empty":          {1, nil},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewKeyring did not panic", name)
				}
			}()
			NewKeyring(tc.current, tc.keys)
		}()
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k1, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "1.key"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, fi.Mode(), err, want)
		}
	}
	if raw, _ := os.ReadFile(filepath.Join(dir, "1.key")); len(raw) != KeySize {
		t.Errorf("1.key holds %d bytes", len(raw))
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("the key directory holds %d files, want 1.key only", len(des))
	}
	tok := k1.Token(bob)

	// A restart loads the same key.
	k1b, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1b.Token(bob) != tok {
		t.Error("after a reload the same target has another token")
	}

	// Rotation: a higher-numbered file becomes current, the old one still verifies.
	if err := os.WriteFile(filepath.Join(dir, "2.key"), key2, 0o600); err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Parse(tok); err != nil || got != bob {
		t.Errorf("old token after rotation: %+v, %v", got, err)
	}
	if want := ring(t, 2, map[byte][]byte{1: key1, 2: key2}).Token(bob); k2.Token(bob) != want {
		t.Errorf("new tokens are not made with key 2")
	}

	// Mistakes are reported, not skipped.
	for name, content := range map[string][]byte{"007.key": key1, "256.key": key1, "new.key": key1, "3.key": []byte("short\n")} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, content, 0o600)
		if _, err := LoadKeyring(dir); err == nil {
			t.Errorf("LoadKeyring with %s succeeded", name)
		}
		os.Remove(path)
	}
}

func TestMailto(t *testing.T) {
	k := ring(t, 1, map[byte][]byte{1: key1})
	id := ids.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, idx := range []int{0, 7, 999, math.MaxInt} {
		local := k.MailtoLocal(id, idx)
		if len(local) > 64 {
			t.Errorf("MailtoLocal(%q, %d) = %q: %d octets, RFC 5321 allows 64", id, idx, local, len(local))
		}
		if local != strings.ToLower(local) {
			t.Errorf("MailtoLocal = %q: not lowercase", local)
		}
		for _, l := range []string{local, strings.ToUpper(local)} {
			gotID, gotIdx, err := k.ParseMailto(l)
			if err != nil || gotID != id || gotIdx != idx {
				t.Errorf("ParseMailto(%q) = %q, %d, %v", l, gotID, gotIdx, err)
			}
		}
	}
	local := k.MailtoLocal(id, 3)
	if k.MailtoLocal(id, 3) != local {
		t.Error("MailtoLocal is not deterministic")
	}
	// Forgeries: another index or message under the same mac, a changed
	// mac character, a cut, junk.
	mac := local[strings.LastIndexByte(local, '-')+1:]
	forged := []string{
		"u-" + id + "-4-" + mac,
		"u-" + id + "-03-" + mac,
		"u-" + ids.New(time.Now()) + "-3-" + mac,
		local[:len(local)-1],
		local + "0",
		"b" + local[1:],
		"", "u", "u---", "u-" + id + "--1-" + mac, "u-" + id + "-x-" + mac,
		strings.Repeat("u-", 40),
	}
	for i := range len(mac) {
		c := byte('a')
		if mac[i] == 'a' {
			c = 'b'
		}
		forged = append(forged, local[:len(local)-len(mac)+i]+string(c)+local[len(local)-len(mac)+i+1:])
	}
	for _, f := range forged {
		if _, _, err := k.ParseMailto(f); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseMailto(%q) = %v, want ErrBadToken", f, err)
		}
	}
	// Rotation keeps old mailto addresses working.
	rotated := ring(t, 2, map[byte][]byte{1: key1, 2: key2})
	if gotID, gotIdx, err := rotated.ParseMailto(local); err != nil || gotID != id || gotIdx != 3 {
		t.Errorf("after rotation ParseMailto = %q, %d, %v", gotID, gotIdx, err)
	}
	if rotated.MailtoLocal(id, 3) == local {
		t.Error("the rotated ring still uses key 1 for mailto")
	}
}

// fuzzRing is the ring the committed token seeds were made with.
func fuzzRing(t testing.TB) *Keyring { return ring(t, 2, map[byte][]byte{1: key1, 2: key2}) }

// FuzzParseToken: Parse never panics, and anything it accepts is exactly
// what Token makes for that target under that key.
func FuzzParseToken(f *testing.F) {
	k := fuzzRing(f)
	f.Fuzz(func(t *testing.T, tok string) {
		target, err := k.Parse(tok)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("Parse(%q): %v is not ErrBadToken", tok, err)
			}
			return
		}
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		if again := k.token(raw[0], target); again != tok {
			t.Fatalf("Parse(%q) = %+v, which encodes to %q", tok, target, again)
		}
	})
}

// FuzzParseMailto: ParseMailto never panics, and anything it accepts is
// what MailtoLocal makes for the same delivery, up to case.
func FuzzParseMailto(f *testing.F) {
	k := ring(f, 1, map[byte][]byte{1: key1})
	f.Fuzz(func(t *testing.T, local string) {
		id, idx, err := k.ParseMailto(local)
		if err != nil {
			return
		}
		if again := k.MailtoLocal(id, idx); again != strings.ToLower(local) {
			t.Fatalf("ParseMailto(%q) = %q, %d, which encodes to %q", local, id, idx, again)
		}
	})
}
