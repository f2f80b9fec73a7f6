package compose

import (
	"bytes"
	"errors"
	"fmt"
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
	path      []int
	mediaType string
	// body: a text/plain or text/html part Heed composes. The others,
	// attachments and what is inside a signed or encrypted multipart or
	// a multipart sent as an attachment, are read whole and left as
	// opaque leaves.
	body bool
	// footer: a body part that, on marketing mail, carries the footer when
	// it lacks a placeholder: the first part holding text of each
	// multipart/mixed (or other multipart) on the way to it, and every
	// view of a multipart/alternative.
	footer  bool
	charset string
	text    string // decoded, LF line breaks
	err     error  // the part cannot be decoded: text is what could be
}

// views parses msg with go-message, independently of the code under
// test, and returns its leaf parts decoded.
func views(t testing.TB, msg []byte) []view {
	t.Helper()
	vs, n, err := readViews(msg)
	if err != nil {
		t.Fatalf("the output does not parse: %v", err)
	}
	if n > maxParts {
		t.Fatalf("%d parts", n)
	}
	for _, v := range vs {
		if v.err != nil {
			t.Fatalf("part %v: %v", v.path, v.err)
		}
	}
	return vs
}

// readViews is views without a test to fail. It also says how many parts
// the body has, multiparts included. A part whose transfer encoding or
// charset go-message does not know is a view with err set.
func readViews(msg []byte) ([]view, int, error) {
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, 0, err
	}
	r := viewReader{}
	_, err = r.walk(e, err, nil, "text/plain", true, 0)
	return r.views, r.parts, err
}

type viewReader struct {
	views []view
	parts int
}

// walk appends the leaves of e and reports whether e holds a body part.
// shown says whether e is displayed as the body of its parent (see
// view.footer).
func (r *viewReader) walk(e *message.Entity, eerr error, path []int, defaultType string, shown bool, depth int) (bool, error) {
	if depth > maxDepth {
		return false, fmt.Errorf("nested more than %d deep", maxDepth)
	}
	mt := defaultType
	var params map[string]string
	if e.Header.Get("Content-Type") != "" {
		mt, params, _ = e.Header.ContentType()
	}
	disp, _, _ := strings.Cut(e.Header.Get("Content-Disposition"), ";")
	opaque := strings.EqualFold(strings.TrimSpace(disp), "attachment") ||
		mt == "multipart/signed" || mt == "multipart/encrypted"
	if strings.HasPrefix(mt, "multipart/") && !opaque {
		mr := e.MultipartReader()
		alternative, claimed, held := mt == "multipart/alternative", false, false
		dt := "text/plain"
		if mt == "multipart/digest" {
			dt = "message/rfc822"
		}
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				return held, nil
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return held, err
			}
			if r.parts++; r.parts > 100*maxParts {
				return held, errors.New("too many parts to check")
			}
			has, werr := r.walk(p, err, append(path[:len(path):len(path)], i), dt, shown && (alternative || !claimed), depth+1)
			if werr != nil {
				return held, werr
			}
			claimed, held = claimed || has, held || has
		}
	}
	b, err := io.ReadAll(e.Body)
	if eerr != nil {
		err = eerr
	}
	v := view{path: path, mediaType: mt, charset: params["charset"], text: strings.ReplaceAll(string(b), "\r\n", "\n"), err: err}
	v.body = !opaque && (mt == "text/plain" || mt == "text/html")
	v.footer = v.body && shown
	r.views = append(r.views, v)
	return v.body, nil
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
