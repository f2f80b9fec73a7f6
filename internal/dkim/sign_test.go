package dkim

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// verifyAll checks msg with Verify against zone and fails the test unless
// there are exactly want signatures and all verify.
func verifyAll(t *testing.T, msg []byte, zone fakeDNS, want int) []Result {
	t.Helper()
	rs, err := Verify(msg, zone.lookupTXT)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(rs) != want {
		t.Fatalf("%d results, want %d: %s", len(rs), want, describe(rs))
	}
	for _, r := range rs {
		if r.Err != nil {
			t.Errorf("signature d=%s s=%s a=%s does not verify: %v\n%s", r.Domain, r.Selector, r.Algorithm, r.Err, msg)
		}
	}
	return rs
}

func TestSignVerifies(t *testing.T) {
	keys := signingKeys(t)
	zone := publish(t, keys)
	for name, msg := range testMessages {
		t.Run(name, func(t *testing.T) {
			out := signed(t, msg, keys)
			rs := verifyAll(t, out, zone, 2)
			// RSA on top whatever the order of keys.
			if rs[0].Algorithm != RSA || rs[1].Algorithm != Ed25519 {
				t.Errorf("order %s, %s; want RSA first", rs[0].Algorithm, rs[1].Algorithm)
			}
			if rs[0].Selector != keys[1].Selector || rs[1].Selector != keys[0].Selector {
				t.Errorf("selectors %q, %q", rs[0].Selector, rs[1].Selector)
			}
		})
	}
}

func TestSignatureTags(t *testing.T) {
	keys := signingKeys(t)
	for name, msg := range testMessages {
		t.Run(name, func(t *testing.T) {
			sigs, err := Sign(msg, keys)
			if err != nil {
				t.Fatal(err)
			}
			// Each field ends in CRLF and starts a new field, so the
			// string can be prepended as it is.
			if !strings.HasPrefix(sigs, "DKIM-Signature:") || !strings.HasSuffix(sigs, "\r\n") {
				t.Fatalf("not header fields: %q", sigs)
			}
			wantH, err := HeaderKeys(msg)
			if err != nil {
				t.Fatal(err)
			}
			tags := signatureTags(t, []byte(sigs+"\r\n"))
			if len(tags) != 2 {
				t.Fatalf("%d signatures, want 2", len(tags))
			}
			for i, want := range []Key{keys[1], keys[0]} {
				tg := tags[i]
				check := map[string]string{
					"v": "1", "a": string(want.Algorithm), "c": "relaxed/relaxed",
					"d": want.Domain, "s": want.Selector,
				}
				for k, v := range check {
					if tg[k] != v {
						t.Errorf("signature %d: %s=%q, want %q", i, k, tg[k], v)
					}
				}
				for _, k := range []string{"l", "x", "i", "q"} {
					if _, ok := tg[k]; ok {
						t.Errorf("signature %d has %s=%q", i, k, tg[k])
					}
				}
				if got := strings.Split(tg["h"], ":"); !slices.Equal(got, wantH) {
					t.Errorf("signature %d: h=%v, want %v", i, got, wantH)
				}
			}
		})
	}
}

// TestRelaxedTolerates shows the changes relays make in transit — header
// re-folding, case of field names, trailing white space, blank lines at
// the end of the body — do not break the signatures (RFC 6376 section
// 3.4.2 and 3.4.4), while the same signatures are not trivially valid (the
// other tests break them).
func TestRelaxedTolerates(t *testing.T) {
	keys := signingKeys(t)
	zone := publish(t, keys)
	for name, msg := range testMessages {
		t.Run(name, func(t *testing.T) {
			out := signed(t, msg, keys)
			mangled := mangleWhitespace(t, out)
			if bytes.Equal(mangled, out) {
				t.Fatal("mangleWhitespace changed nothing")
			}
			verifyAll(t, mangled, zone, 2)
		})
	}
}

// mangleWhitespace re-folds every header field but DKIM-Signature at each
// space with mixed white space, upper-cases Subject's name, and in the
// body doubles spaces, adds trailing white space to every line and blank
// lines at the end. Relaxed canonicalisation maps each field back to its
// name in lower case, a colon and its words separated by single spaces.
func mangleWhitespace(t *testing.T, msg []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	err := walkHeader(msg, func(name, field []byte) {
		if equalFoldASCII(name, "DKIM-Signature") {
			out.Write(field)
			out.WriteString("\r\n")
			return
		}
		n, value, _ := bytes.Cut(field, []byte{':'})
		if equalFoldASCII(name, "Subject") {
			n = []byte("SUBJECT")
		}
		words := strings.Fields(string(value))
		out.WriteString(string(n) + ":\t " + strings.Join(words, " \t\r\n  ") + " \r\n")
	})
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("\r\n")
	_, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for line := range strings.SplitSeq(string(body), "\r\n") {
		out.WriteString(strings.ReplaceAll(line, " ", "  \t") + " \t \r\n")
	}
	out.WriteString("\r\n \r\n\r\n")
	return out.Bytes()
}

// TestTamperingBreaks shows that what over-signing is for works: a field
// added after signing, at the top of the header (where relays add theirs)
// or at the bottom, and any change of the body, make every signature fail
// — while adding an unsigned field (Received) does not.
func TestTamperingBreaks(t *testing.T) {
	keys := signingKeys(t)
	zone := publish(t, keys)
	added := []string{
		"Subject: Your account is locked",
		"From: Bank <security@bank.example>",
		"List-Unsubscribe: <https://evil.example/u>",
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
		"List-Id: <other.example.com>",
		"Feedback-ID: x:y:z",
		"Reply-To: attacker@evil.example",
		"To: another@example.org",
		"Content-Type: text/html; charset=utf-8",
		"Content-Transfer-Encoding: base64",
		"Date: Mon, 1 Jan 2035 00:00:00 +0000",
		"Message-ID: <replayed@evil.example>",
		// A tenant replaying its own signed mail "on behalf of" another
		// tenant: Heed checks these at submission, the signature must
		// keep them as checked.
		"Sender: ceo@other-tenant.example",
		"Resent-From: ceo@other-tenant.example",
		"Resent-Sender: ceo@other-tenant.example",
		"Resent-Date: Mon, 1 Jan 2035 00:00:00 +0000",
		"Resent-To: victim@example.org",
		"Resent-Cc: victim@example.org",
		"Resent-Message-ID: <replayed@other-tenant.example>",
	}
	for name, msg := range testMessages {
		out := signed(t, msg, keys)
		for _, field := range added {
			for _, at := range []string{"top", "bottom"} {
				t.Run(name+"/"+at+"/"+field, func(t *testing.T) {
					expectFail(t, insertField(out, field, at == "top"), zone)
				})
			}
		}
		t.Run(name+"/body", func(t *testing.T) {
			i := bytes.Index(out, []byte("\r\n\r\n")) + 4
			changed := append(bytes.Clone(out[:i]), "Visit https://evil.example\r\n"...)
			expectFail(t, append(changed, out[i:]...), zone)
		})
		t.Run(name+"/body-appended", func(t *testing.T) {
			expectFail(t, append(bytes.Clone(out), "P.S. appended\r\n"...), zone)
		})
		t.Run(name+"/unsigned-field", func(t *testing.T) {
			m := insertField(out, "Received: from heed.example by mx.example.net", true)
			verifyAll(t, insertField(m, "X-Spam-Score: 0", false), zone, 2)
		})
	}
}

// expectFail fails the test unless msg has two signatures and neither
// verifies, for a reason other than DNS.
func expectFail(t *testing.T, msg []byte, zone fakeDNS) {
	t.Helper()
	rs, err := Verify(msg, zone.lookupTXT)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Err == nil {
			t.Errorf("%s signature still verifies after tampering:\n%s", r.Algorithm, msg)
		} else if dkim.IsTempFail(r.Err) {
			t.Errorf("%s: temporary failure %v, want a verification failure", r.Algorithm, r.Err)
		}
	}
}

func TestHeaderKeys(t *testing.T) {
	// want lists every field of the policy, in its order, once more than
	// present: the counts given, and 1 for every field not given.
	want := func(present map[string]int) []string {
		var out []string
		for _, name := range signedFields {
			for range present[name] + 1 {
				out = append(out, name)
			}
		}
		return out
	}
	tests := []struct {
		name string
		msg  []byte
		want []string
	}{
		{"plain", testMessages["plain"], want(map[string]int{
			"From": 1, "To": 1, "Subject": 1, "Date": 1, "Message-ID": 1, "MIME-Version": 1, "Content-Type": 1,
		})},
		{"list headers present", testMessages["multipart"], want(map[string]int{
			"From": 1, "To": 1, "Subject": 1, "Date": 1, "Message-ID": 1, "MIME-Version": 1, "Content-Type": 1,
			"List-Id": 1, "List-Unsubscribe": 1, "List-Unsubscribe-Post": 1, "Feedback-ID": 1,
		})},
		{"sender and resent block present", testMessages["resent"], want(map[string]int{
			"From": 1, "Sender": 1, "To": 1, "Subject": 1, "Date": 1, "Message-ID": 1,
			"Resent-Date": 1, "Resent-From": 1, "Resent-Sender": 1, "Resent-To": 1, "Resent-Message-ID": 1,
		})},
		{"folded fields count once, case is ignored, repeats all signed", crlf(
			"from: a@example.com",
			"TO: b@example.net,",
			" c@example.net",
			"Cc: d@example.net",
			"cc: e@example.net",
			"Received: x",
			"X-Note: a continuation line that looks like a field",
			" From: is not one",
			"",
			"body",
		), want(map[string]int{"From": 1, "To": 1, "Cc": 2})},
		{"LF line endings", []byte("From: a@example.com\nSubject: s\n\nbody\n"),
			want(map[string]int{"From": 1, "Subject": 1})},
	}
	// The policy itself, written out: compliance.md's list, in h= order.
	policy := []string{"From", "Sender", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
		"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
		"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID"}
	if got := want(nil); !slices.Equal(got, policy) {
		t.Fatalf("the policy lists %v, want %v", got, policy)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HeaderKeys(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	keys := signingKeys(t)
	plain := testMessages["plain"]
	tests := []struct {
		name       string
		msg        []byte
		keys       []Key
		wantErr    string // a regexp
		badMessage bool
	}{
		{"no From", bytes.Replace(plain, []byte("From:"), []byte("X-From:"), 1), keys, "0 From fields", true},
		{"two From", insertField(plain, "From: other@example.org", false), keys, "2 From fields", true},
		{"first line continues nothing", append([]byte(" From \r\n"), plain...), keys, "malformed header field", true},
		{"line without colon", insertField(plain, "From someone", false), keys, "malformed header field", true},
		{"space before colon", insertField(plain, "Subject : x", false), keys, "malformed header field", true},
		{"no keys", plain, nil, "no keys", false},
		{"no end of header", []byte("From: a@example.com\r\nSubject: s\r\n"), keys, "no blank line", true},
		{"algorithm mismatch", plain, []Key{{Domain: "example.com", Selector: "s1", Algorithm: RSA, Signer: keys[0].Signer}},
			`d=example\.com s=s1 .*key is ed25519-sha256, not "rsa-sha256"`, false},
		{"unknown algorithm", plain, []Key{keys[1], {Domain: "example.com", Selector: "s1", Algorithm: "rsa-sha1", Signer: keys[1].Signer}},
			`d=example\.com s=s1 .*not "rsa-sha1"`, false},
		{"no RSA key", plain, []Key{keys[0]}, `no RSA key`, false},
		{"tag injection in domain", plain, []Key{{Domain: "example.com; l=0", Selector: "s1", Algorithm: RSA, Signer: keys[1].Signer}},
			`not an ASCII domain name`, false},
		{"bad selector", plain, []Key{{Domain: "example.com", Selector: "-s1", Algorithm: RSA, Signer: keys[1].Signer}},
			`d=example\.com s=-s1 .*selector`, false},
		{"no signer", plain, []Key{{Domain: "example.com", Selector: "s1", Algorithm: RSA}}, `s=s1 .*no private key`, false},
		{"RSA-512", plain, []Key{{Domain: "example.com", Selector: "weak", Algorithm: RSA, Signer: rawRSA(t, "rsa512-pkcs1.pem")}},
			`s=weak .*512 bits`, false},
		{"second key failing names itself", plain, append(slices.Clone(keys),
			Key{Domain: "example.org", Selector: "broken", Algorithm: Ed25519}), `d=example\.org s=broken`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Sign(tt.msg, tt.keys)
			if err == nil {
				t.Fatal("no error")
			}
			if !regexp.MustCompile(tt.wantErr).MatchString(err.Error()) {
				t.Errorf("error %q does not match %q", err, tt.wantErr)
			}
			// The message's faults and only those are the sender's.
			if got := errors.Is(err, ErrBadMessage); got != tt.badMessage {
				t.Errorf("errors.Is(%q, ErrBadMessage) = %v", err, got)
			}
		})
	}
}

// rawRSA parses a PKCS#1 key without ParsePEM's size check, to show Sign
// checks too.
func rawRSA(t *testing.T, name string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyReportsKeyProblems(t *testing.T) {
	keys := signingKeys(t)
	out := signed(t, testMessages["plain"], keys)
	zone := publish(t, keys)
	// The RSA record holds another key, the Ed25519 one is missing: the
	// admin check must say which selector is wrong and how.
	rsaName := keys[1].Selector + "._domainkey.example.com"
	zone[rsaName] = publish(t, []Key{{Domain: "example.com", Selector: keys[1].Selector,
		Signer: readPEM(t, "rsa1024-pkcs8.pem")}})[rsaName]
	delete(zone, keys[0].Selector+"._domainkey.example.com")
	rs, err := Verify(out, zone.lookupTXT)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d results", len(rs))
	}
	if r := rs[0]; r.Algorithm != RSA || r.Selector != keys[1].Selector || r.Domain != "example.com" ||
		r.Err == nil || !strings.Contains(r.Err.Error(), "did not verify") {
		t.Errorf("wrong RSA key: %s", describe(rs[:1]))
	}
	if r := rs[1]; r.Algorithm != Ed25519 || r.Selector != keys[0].Selector || !dkim.IsPermFail(r.Err) {
		t.Errorf("missing Ed25519 record: %s", describe(rs[1:]))
	}
}
