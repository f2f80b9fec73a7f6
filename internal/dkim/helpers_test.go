package dkim

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// crlf joins header and body lines into a message with CRLF line endings.
// Messages are written as Go strings rather than files so that trailing
// white space, which editors strip, stays visible and exact.
func crlf(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// Test messages: what Heed sends, and the shapes that stress
// canonicalisation.
var testMessages = map[string][]byte{
	"plain": crlf(
		"From: Clinic <appointments@example.com>",
		"To: bob@example.net",
		"Subject: Your appointment tomorrow",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <01kabc@example.com>",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"",
		"Hello Bob,",
		"",
		"See you tomorrow at 10:00.",
	),
	"multipart": crlf(
		"From: News <news@example.com>",
		"To: bob@example.net",
		"Subject: November news",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <01kabd@example.com>",
		"MIME-Version: 1.0",
		"List-Id: News <news.example.com>",
		"List-Unsubscribe: <https://heed.example/u/AbC123>, <mailto:u-AbC123@heed.example>",
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
		"Feedback-ID: news:t1:heed",
		`Content-Type: multipart/alternative; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"Caf=C3=A9 news. Unsubscribe: https://heed.example/u/AbC123",
		"--b1",
		"Content-Type: text/html; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"<p>Caf=C3=A9 news.</p>",
		"--b1--",
	),
	"folded": crlf(
		"Received: from app.example.com by heed.example; Mon, 23 Nov 2026 10:00:00 +0000",
		"From: =?utf-8?q?Caf=C3=A9_Clinic?= <appointments@example.com>",
		"To: one@example.net, two@example.net, three@example.net,",
		"  four@example.net, five@example.net",
		"Cc: six@example.net,",
		"\tseven@example.net",
		"Subject: A subject long enough that the application folded it over",
		" several lines, as RFC 5322 section 2.2.3 allows any header to be",
		"\t folded",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <01kabe@example.com>",
		"Reply-To: desk@example.com",
		"X-Mailer: app 1.0",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 8bit",
		"",
		"Body.",
	),
	// A tenant's resend of its own mail: a Sender and a resent block
	// (RFC 5322 section 3.6.6), all at the tenant's domain, signed as they
	// are; only another one added later must break the signature.
	"resent": crlf(
		"Resent-From: desk@example.com",
		"Resent-Sender: robot@example.com",
		"Resent-Date: Tue, 24 Nov 2026 09:00:00 +0000",
		"Resent-To: carol@example.net",
		"Resent-Message-ID: <01kabg@example.com>",
		"From: Clinic <appointments@example.com>",
		"Sender: robot@example.com",
		"To: bob@example.net",
		"Subject: Your appointment tomorrow",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <01kabc@example.com>",
		"",
		"Hello Bob.",
	),
	"whitespace": crlf(
		"From: appointments@example.com",
		"To: bob@example.net",
		"Subject: trailing white space",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <01kabf@example.com>",
		"",
		"line with trailing spaces   ",
		"line with a trailing tab\t",
		"  indented \t line",
		"   ",
		"",
		"",
		"",
	),
}

// testKeys loads the committed test keys (see testdata/README.md): an
// RSA-2048 and an Ed25519 key, written by OpenSSL.
func testKeys(t testing.TB) (rsaKey, edKey crypto.Signer) {
	t.Helper()
	return readPEM(t, "rsa2048-pkcs1.pem"), readPEM(t, "ed25519-pkcs8.pem")
}

func readPEM(t testing.TB, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePEM(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return k
}

// signingKeys returns an RSA and an Ed25519 Key of example.com, Ed25519
// first so that tests see Sign put RSA on top.
func signingKeys(t testing.TB) []Key {
	rsaKey, edKey := testKeys(t)
	return []Key{
		{Domain: "example.com", Selector: "heed-e-20261123-abcdef", Algorithm: Ed25519, Signer: edKey},
		{Domain: "example.com", Selector: "heed-r-20261123-abcdef", Algorithm: RSA, Signer: rsaKey},
	}
}

// fakeDNS is the zone verifiers look keys up in: name to TXT value.
type fakeDNS map[string]string

// publish adds the TXT records of keys.
func publish(t testing.TB, keys []Key) fakeDNS {
	t.Helper()
	z := fakeDNS{}
	for _, k := range keys {
		v, err := TXTRecord(k.Signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		z[k.Selector+"._domainkey."+k.Domain] = v
	}
	return z
}

// lookupTXT answers as net.LookupTXT does for a record published as
// SplitTXT's character-strings: one string per record, joined.
func (z fakeDNS) lookupTXT(name string) ([]string, error) {
	v, ok := z[name]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return []string{strings.Join(SplitTXT(v), "")}, nil
}

// signed returns msg with the signatures of keys prepended.
func signed(t testing.TB, msg []byte, keys []Key) []byte {
	t.Helper()
	sigs, err := Sign(msg, keys)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(sigs), msg...)
}

// signatureTags returns the tags of each DKIM-Signature of msg, top first.
func signatureTags(t testing.TB, msg []byte) []map[string]string {
	t.Helper()
	var tags []map[string]string
	err := walkHeader(msg, func(name, field []byte) {
		if equalFoldASCII(name, "DKIM-Signature") {
			_, v, _ := bytes.Cut(field, []byte{':'})
			tags = append(tags, parseTags(string(v)))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// insertField adds field (no line ending) at the top of msg's header, or
// at its bottom, just before the blank line.
func insertField(msg []byte, field string, top bool) []byte {
	if top {
		return append([]byte(field+"\r\n"), msg...)
	}
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	out := append([]byte{}, msg[:i+2]...)
	out = append(out, field+"\r\n"...)
	return append(out, msg[i+2:]...)
}

// describe formats results for failure messages.
func describe(rs []Result) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "[%s s=%s a=%s: %v] ", r.Domain, r.Selector, r.Algorithm, r.Err)
	}
	return b.String()
}

// goKeyOf returns the Go key under a signer ParsePrivate or ParsePEM
// made, which is the key itself in a build without OpenSSL.
func goKeyOf(s crypto.Signer) crypto.Signer {
	if w, ok := s.(interface{ goKey() crypto.Signer }); ok {
		return w.goKey()
	}
	return s
}

// goRSA returns the *rsa.PrivateKey under s.
func goRSA(t testing.TB, s crypto.Signer) *rsa.PrivateKey {
	t.Helper()
	k, ok := goKeyOf(s).(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%T is not an RSA key", s)
	}
	return k
}
