package compose

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
)

// The test tenant, acme, and its lists. A test message picks its list
// with X-Heed-List, as an app does.
const (
	postal    = "Acme Corp\n1 Main St\nSpringfield, IL 62701"
	postalHTM = "Acme Corp<br>1 Main St<br>Springfield, IL 62701"
	newsURL   = "https://unsub.relay.test/u/AbCdEf0123456789_-news"
	mailto    = "u-06h0abc-0@unsubscribe.relay.test"
)

// longURL is 150 characters: List-Unsubscribe must fold without
// splitting it.
var longURL = "https://unsubscribe.relay.test/u/" + strings.Repeat("AbCdEfGhIj", 11) + "0123456"

// input is the Input for a copy of a message on list (an X-Heed-List
// value): news and promo are marketing, receipts transactional,
// account transactional with unsubscribe:true; "" is a legacy caller.
func input(list string) Input {
	in := Input{
		MessageID: "06h0abc", Hostname: "relay.test", ReceivedAt: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		Helo: "app.acme.test", ClientAddr: "192.0.2.1", TLS: true, Auth: true, Recipient: "pat@example.net",
	}
	if list == "" {
		return in
	}
	in.Tenant, in.List, in.PostalAddress = "acme", list, postal
	switch list {
	case "news":
		in.ListName, in.Kind, in.Unsubscribe = "Acme News", kindMarketing, true
		in.UnsubscribeURL, in.UnsubscribeMailto = newsURL, mailto
	case "promo":
		in.ListName, in.Kind, in.Unsubscribe = "Café d'Acme «Deals»", kindMarketing, true
		in.UnsubscribeURL, in.UnsubscribeMailto = longURL, mailto
	case "receipts":
		in.ListName, in.Kind = "Receipts", kindTransactional
	case "account":
		in.ListName, in.Kind, in.Unsubscribe = "Account notices", kindTransactional, true
		in.UnsubscribeURL = "https://unsub.relay.test/u/ZyXw9876-account"
	default:
		panic("no test list " + list)
	}
	return in
}

// listOf is the X-Heed-List of msg.
func listOf(t testing.TB, msg []byte) string {
	t.Helper()
	h, _, err := Split(msg)
	if err != nil {
		t.Fatal(err)
	}
	return h.Get("X-Heed-List")
}

func renderAs(t testing.TB, msg []byte, in Input) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, msg, in); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// view is a part of a rendered message as a reader of it sees it.
type view struct {
	path       []int
	mediaType  string
	attachment bool
	charset    string
	text       string // decoded, LF line breaks
}

// views parses msg with go-message, independently of the code under
// test, and returns its leaf parts decoded.
func views(t testing.TB, msg []byte) []view {
	t.Helper()
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("the output does not parse: %v", err)
	}
	var vs []view
	err = e.Walk(func(path []int, e *message.Entity, err error) error {
		if err != nil {
			return err
		}
		mt, params, _ := e.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		disp, _, _ := e.Header.ContentDisposition()
		b, err := io.ReadAll(e.Body)
		if err != nil {
			return err
		}
		vs = append(vs, view{path: path, mediaType: mt, attachment: disp == "attachment", charset: params["charset"],
			text: strings.ReplaceAll(string(b), "\r\n", "\n")})
		return nil
	})
	if err != nil {
		t.Fatalf("walking the output: %v", err)
	}
	return vs
}

func (v view) body() bool {
	return !v.attachment && (v.mediaType == "text/plain" || v.mediaType == "text/html")
}

// fakeSigner signs with a fixed field and remembers what it signed.
type fakeSigner struct{ signed []byte }

const fakeSig = "DKIM-Signature: v=1; a=ed25519-sha256; d=acme.test; s=t; b=fake\r\n"

func (s *fakeSigner) Sign(msg []byte) (string, error) {
	s.signed = append([]byte(nil), msg...)
	return fakeSig, nil
}

type failingSigner struct{}

func (failingSigner) Sign([]byte) (string, error) { return "", errors.New("key unreadable") }

// checkHeaders asserts what a reader of out's header must see: Heed's
// fields once each (and the app's versions gone), the trace field on top
// (under the signature when signed), Date and Message-ID, no line over
// 998 octets.
func checkHeaders(t testing.TB, out []byte, in Input, signed bool) {
	t.Helper()
	h, _, err := Split(out)
	if err != nil {
		t.Fatalf("the output header does not parse: %v", err)
	}
	n := map[string]int{}
	var keys []string
	for f := h.Fields(); f.Next(); {
		k := strings.ToLower(f.Key())
		if strings.HasPrefix(k, "x-heed-") {
			t.Errorf("%s left in the output", f.Key())
		}
		n[k]++
		keys = append(keys, k)
	}
	want := map[string]int{"dkim-signature": 0, "list-id": 0, "feedback-id": 0, "list-unsubscribe": 0, "list-unsubscribe-post": 0}
	if signed {
		want["dkim-signature"] = 1
	}
	if in.Kind != "" {
		want["list-id"], want["feedback-id"] = 1, 1
		if in.Unsubscribe {
			want["list-unsubscribe"] = 1
			if strings.HasPrefix(in.UnsubscribeURL, "https://") {
				want["list-unsubscribe-post"] = 1
			}
		}
	}
	for k, c := range want {
		if n[k] != c {
			t.Errorf("%d %s fields, want %d", n[k], k, c)
		}
	}
	if n["date"] == 0 || n["message-id"] == 0 {
		t.Errorf("Date or Message-ID missing: %v", keys)
	}
	first := "received"
	if signed {
		first = "dkim-signature"
	}
	if len(keys) == 0 || keys[0] != first || signed && (len(keys) < 2 || keys[1] != "received") {
		t.Errorf("fields start %v, want %s on top", keys[:min(len(keys), 2)], first)
	}
	// The app's own fields go as they came, long lines and all.
	for f := h.Fields(); f.Next(); {
		if !heedField(f.Key()) {
			continue
		}
		raw, _ := f.Raw()
		for line := range bytes.SplitSeq(raw, []byte("\n")) {
			if len(line) > 999 {
				t.Errorf("%s line of %d octets: %.60q...", f.Key(), len(line), line)
			}
		}
	}
}

func heedField(key string) bool {
	switch strings.ToLower(key) {
	case "received", "list-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id", "dkim-signature":
		return true
	}
	return false
}

func bodyOf(t testing.TB, msg []byte) []byte {
	t.Helper()
	_, b, err := Split(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
