package compose

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestGoldenProperties checks, on every golden input, what a recipient
// observes, reading the output with go-message rather than trusting the
// golden files: every body part in UTF-8 with no placeholder left; on
// marketing mail the opt-out link and the postal address exactly once in
// each view; attachments and untouched transactional bodies as they came.
func TestGoldenProperties(t *testing.T) {
	for _, p := range goldenCases(t) {
		t.Run(strings.TrimSuffix(filepath.Base(p), ".eml"), func(t *testing.T) {
			msg, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			in := input(listOf(t, msg))
			out := renderAs(t, msg, in)
			checkHeaders(t, out, in, false)
			checkViews(t, msg, out, in)
			if in.Kind == kindTransactional && !bytes.Contains(msg, []byte(placeholderPrefix)) &&
				!bytes.Contains(msg, []byte("base64")) && !bytes.Equal(bodyOf(t, out), bodyOf(t, msg)) {
				t.Error("the body of transactional mail without placeholders changed")
			}
			if err := Check(msg); err != nil {
				t.Errorf("Check refuses a golden input: %v", err)
			}
		})
	}
}

// checkViews compares the parts of msg and its rendering out.
func checkViews(t testing.TB, msg, out []byte, in Input) {
	t.Helper()
	vin, vout := views(t, msg), views(t, out)
	if len(vin) != len(vout) {
		t.Fatalf("%d parts in the output, %d in the input", len(vout), len(vin))
	}
	footers := 0
	for i, o := range vout {
		if !o.body {
			if o.text != vin[i].text {
				t.Errorf("part %v (%s) changed", o.path, o.mediaType)
			}
			continue
		}
		if strings.Contains(o.text, urlPlaceholder) || strings.Contains(o.text, addrPlaceholder) {
			t.Errorf("part %v keeps a placeholder:\n%s", o.path, o.text)
		}
		if !utf8.ValidString(o.text) {
			t.Errorf("part %v is not UTF-8 (charset %q)", o.path, o.charset)
		}
		if in.Kind != kindMarketing || !o.footer {
			// Placeholders filled, nothing added.
			if want := filled(vin[i].text, o.mediaType, in); o.text != want && !strings.Contains(strings.ToLower(want), "<meta") {
				t.Errorf("part %v (%s), which gets no footer, is\n%s\nwant\n%s", o.path, o.mediaType, o.text, want)
			}
			continue
		}
		footers++
		addr := postal
		if o.mediaType == "text/html" {
			addr = postalHTM
		}
		// Once in the footer, or where the placeholders were.
		for _, c := range [][2]string{{in.UnsubscribeURL, urlPlaceholder}, {addr, addrPlaceholder}} {
			want := max(1, strings.Count(vin[i].text, c[1]))
			if n := strings.Count(o.text, c[0]); n != want {
				t.Errorf("part %v (%s) holds %q %d times, want %d:\n%s", o.path, o.mediaType, c[0], n, want, o.text)
			}
		}
	}
	if in.Kind == kindMarketing && footers == 0 {
		t.Error("no part of marketing mail carries the opt-out")
	}
}

// filled is text with the placeholders filled in for in.
func filled(text, mediaType string, in Input) string {
	url := in.UnsubscribeURL
	if !in.Unsubscribe {
		url = ""
	}
	addr := strings.Join(strings.Split(in.PostalAddress, "\n"), "\n")
	if mediaType == "text/html" {
		url = html.EscapeString(url)
		addr = strings.ReplaceAll(html.EscapeString(in.PostalAddress), "\n", "<br>")
	}
	return strings.NewReplacer(urlPlaceholder, url, addrPlaceholder, addr).Replace(text)
}

// TestUnchangedPartsKeepBytes: the parts Heed does not change, and the
// multipart's preamble and epilogue, are the app's bytes.
func TestUnchangedPartsKeepBytes(t *testing.T) {
	for _, c := range []struct{ file, from, to string }{
		{"05-mixed-attachment.eml", "--mix-5\r\nContent-Type: text/plain; charset=utf-8; name=", "--mix-5--\r\n"},
		{"09-nested.eml", "--outer-9\r\nContent-Type: image/png", "--outer-9--\r\n"},
		{"04-alternative.eml", "--alt-4--", "kept\r\n"},
		{"04-alternative.eml", "Content-Type: multipart/alternative", "--alt-4\r\n"},
	} {
		msg, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(msg, []byte(c.from))
		j := bytes.Index(msg[i:], []byte(c.to))
		if i < 0 || j < 0 {
			t.Fatalf("%s: %q...%q not in the input", c.file, c.from, c.to)
		}
		out := renderAs(t, msg, input(listOf(t, msg)))
		if !bytes.Contains(out, msg[i:i+j+len(c.to)]) {
			t.Errorf("%s: the bytes from %q to %q changed", c.file, c.from, c.to)
		}
	}
}

func TestHTMLEscapesPostalAddress(t *testing.T) {
	msg := []byte("From: a@acme.test\r\nX-Heed-List: news\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nhi {{heed_postal_address}}\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>hi {{heed_postal_address}}</p>\r\n--b--\r\n")
	in := input("news")
	in.PostalAddress = "<script>alert(1)</script> & Co\r\n1 \"Main\" St"
	in.UnsubscribeURL = "https://unsub.relay.test/u/a?b=1&c=2"
	vs := views(t, renderAs(t, msg, in))
	if len(vs) != 2 {
		t.Fatalf("%d parts", len(vs))
	}
	if want := "hi <script>alert(1)</script> & Co\n1 \"Main\" St\n"; !strings.HasPrefix(vs[0].text, want) {
		t.Errorf("text part:\n%s\nwant it to start %q", vs[0].text, want)
	}
	h := vs[1].text
	if want := "<p>hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co<br>1 &#34;Main&#34; St</p>"; !strings.Contains(h, want) {
		t.Errorf("HTML part:\n%s\nwant %q", h, want)
	}
	if strings.Contains(h, "<script>") {
		t.Errorf("HTML part carries the address unescaped:\n%s", h)
	}
	if want := `<a href="https://unsub.relay.test/u/a?b=1&amp;c=2">`; !strings.Contains(h, want) {
		t.Errorf("HTML footer:\n%s\nwant %q", h, want)
	}
}

func TestSigner(t *testing.T) {
	msg, err := os.ReadFile(filepath.Join("testdata", "04-alternative.eml"))
	if err != nil {
		t.Fatal(err)
	}
	in := input("news")
	unsigned := renderAs(t, msg, in)
	s := &fakeSigner{}
	in.Signer = s
	out := renderAs(t, msg, in)
	if !bytes.Equal(s.signed, unsigned) {
		t.Error("the signer did not see the rendered message")
	}
	if string(out) != fakeSig+string(unsigned) {
		t.Errorf("signed output is not the signature on top of the message:\n%.300s", out)
	}
	checkHeaders(t, out, in, true)

	in.Signer = failingSigner{}
	var b bytes.Buffer
	err = Render(&b, msg, in)
	if !errors.Is(err, ErrSign) || errors.Is(err, ErrMalformed) {
		t.Errorf("failing signer: %v, want ErrSign", err)
	}
	if b.Len() != 0 {
		t.Errorf("%d bytes written despite the signing error", b.Len())
	}
}

// TestMalformed: what Check refuses, Render refuses for marketing mail
// with ErrMalformed and sends as it came for transactional mail.
func TestMalformed(t *testing.T) {
	const h = "From: a@acme.test\r\nX-Heed-List: news\r\n"
	for name, msg := range map[string]string{
		"no closing boundary": h + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
		"boundary never used": h + "Content-Type: multipart/mixed; boundary=b\r\n\r\nhi\r\n",
		"no boundary":         h + "Content-Type: multipart/mixed\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n",
		"unknown encoding":    h + "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n",
		"unknown charset":     h + "Content-Type: text/plain; charset=x-martian\r\n\r\nhi\r\n",
		"bad base64":          h + "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n",
		"bad part header":     h + "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nno colon here\r\n\r\nhi\r\n--b--\r\n",
		"bad text params":     h + "Content-Type: text/plain; charset\r\n\r\nhi\r\n",
		"no text part":        h + "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n",
		"signed body":         h + "Content-Type: multipart/signed; boundary=b; protocol=\"application/pkcs7-signature\"\r\n\r\n--b\r\n\r\nhi\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b--\r\n",
		"nested too deep":     h + nested(maxDepth+1),
	} {
		t.Run(name, func(t *testing.T) {
			if err := Check([]byte(msg)); !errors.Is(err, ErrMalformed) {
				t.Errorf("Check: %v, want ErrMalformed", err)
			}
			var b bytes.Buffer
			if err := Render(&b, []byte(msg), input("news")); !errors.Is(err, ErrMalformed) {
				t.Errorf("Render, marketing: %v, want ErrMalformed", err)
			} else {
				t.Log(err)
			}
			out := renderAs(t, []byte(msg), input("account"))
			if !bytes.Equal(bodyOf(t, out), bodyOf(t, []byte(msg))) {
				t.Errorf("transactional body changed:\n%s", out)
			}
		})
	}
	if err := Check([]byte("no header at all\r\n")); !errors.Is(err, ErrMalformed) {
		t.Errorf("Check, no header: %v", err)
	}
}

// TestBoundaryInDecodedText: text decoded from quoted-printable may hold
// a line that is an enclosing boundary; re-encoded as it was it would
// cut the multipart short, so it goes as base64.
func TestBoundaryInDecodedText(t *testing.T) {
	msg := []byte("From: a@acme.test\r\nX-Heed-List: news\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nabove\r\n=2D-b\r\nbelow\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n")
	in := input("news")
	out := renderAs(t, msg, in)
	vs := views(t, out)
	if len(vs) != 2 || !strings.HasPrefix(vs[0].text, "above\n--b\nbelow\n") || vs[1].text != "second" {
		t.Fatalf("structure broken:\n%s", out)
	}
	if !bytes.Contains(out, []byte("Content-Transfer-Encoding: base64")) {
		t.Errorf("the part was not re-encoded as base64:\n%s", out)
	}
	checkViews(t, msg, out, in)
}

// TestEmptyPartBeforeBoundary: a part whose header's blank line runs
// straight into the next boundary has an empty body; its rewrite must
// keep the boundary on its own line.
func TestEmptyPartBeforeBoundary(t *testing.T) {
	msg := []byte("From: a@acme.test\r\nX-Heed-List: news\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b--\r\n")
	in := input("news")
	out := renderAs(t, msg, in)
	checkViews(t, msg, out, in)
}

func TestLegacyCallerKeepsBody(t *testing.T) {
	msg, err := os.ReadFile(filepath.Join("testdata", "12-owned-headers.eml"))
	if err != nil {
		t.Fatal(err)
	}
	in := input("")
	out := renderAs(t, msg, in)
	if !bytes.Equal(bodyOf(t, out), bodyOf(t, msg)) {
		t.Error("the body changed for a caller with no list")
	}
	checkHeaders(t, out, in, false)
}

func TestInputErrors(t *testing.T) {
	msg := []byte("From: a@acme.test\r\n\r\nhi\r\n")
	for name, change := range map[string]func(*Input){
		"unknown kind":       func(in *Input) { in.Kind = "bulk" },
		"colon in list":      func(in *Input) { in.List = "a:b" },
		"no tenant":          func(in *Input) { in.Tenant = "" },
		"marketing, no URL":  func(in *Input) { in.UnsubscribeURL = "" },
		"marketing, no opt":  func(in *Input) { in.Unsubscribe = false },
		"marketing, no addr": func(in *Input) { in.PostalAddress = " \n" },
		"URL with space":     func(in *Input) { in.UnsubscribeURL = "https://x.test/u/a b" },
		"URL with CRLF":      func(in *Input) { in.UnsubscribeURL = "https://x.test/u/a\r\nBcc: x@y" },
		"mailto without @":   func(in *Input) { in.UnsubscribeMailto = "u-1" },
		"mailto with ?":      func(in *Input) { in.UnsubscribeMailto = "u?x=1@unsubscribe.relay.test" },
		"mailto local > 64":  func(in *Input) { in.UnsubscribeMailto = strings.Repeat("u", 65) + "@unsubscribe.relay.test" },
	} {
		in := input("news")
		change(&in)
		var b bytes.Buffer
		err := Render(&b, msg, in)
		if err == nil || errors.Is(err, ErrMalformed) || errors.Is(err, ErrSign) {
			t.Errorf("%s: %v, want an input error", name, err)
		}
	}
	in := input("account")
	in.UnsubscribeURL = ""
	var b bytes.Buffer
	if err := Render(&b, msg, in); err == nil {
		t.Error("List-Unsubscribe with neither URL nor mailto accepted")
	}
}

func TestListUnsubscribeWithoutHTTPS(t *testing.T) {
	in := input("account")
	in.UnsubscribeURL, in.UnsubscribeMailto = "http://127.0.0.1:8080/u/tok", mailto
	out := string(renderAs(t, []byte("From: a@acme.test\r\n\r\nhi\r\n"), in))
	if !strings.Contains(out, "List-Unsubscribe: <http://127.0.0.1:8080/u/tok>,\r\n <mailto:"+mailto+"?subject=unsubscribe>\r\n") {
		t.Errorf("List-Unsubscribe:\n%s", out)
	}
	if strings.Contains(out, "List-Unsubscribe-Post") {
		t.Errorf("List-Unsubscribe-Post without an HTTPS URI (RFC 8058 section 3.1):\n%s", out)
	}
	in.UnsubscribeURL = ""
	out = string(renderAs(t, []byte("From: a@acme.test\r\n\r\nhi\r\n"), in))
	if !strings.Contains(out, "List-Unsubscribe: <mailto:"+mailto+"?subject=unsubscribe>\r\n") || strings.Contains(out, "-Post") {
		t.Errorf("mailto only:\n%s", out)
	}
}

func TestPhrase(t *testing.T) {
	for name, want := range map[string]string{
		"Acme News":         `"Acme News"`,
		`Tom "T" Smith`:     `"Tom \"T\" Smith"`,
		"Café":              "=?utf-8?q?Caf=C3=A9?=",
		"Café, Bar & Grill": "=?utf-8?b?Q2Fmw6ksIEJhciAmIEdyaWxs?=",
		"a\r\nBcc: x":       "=?utf-8?b?YQ0KQmNjOiB4?=",
	} {
		if got := phrase(name); got != want {
			t.Errorf("phrase(%q) = %s, want %s", name, got, want)
		}
	}
}

func TestLastBodyClose(t *testing.T) {
	for s, want := range map[string]int{
		"<p>x</p>":                   -1,
		"<body>x</body>":             7,
		"<BODY>x</Body >y</BODY>\n":  16,
		"x</bodyguard>":              -1,
		"</body></html><!-- </body>": 19,
	} {
		if got := lastBodyClose(s); got != want {
			t.Errorf("lastBodyClose(%q) = %d, want %d", s, got, want)
		}
	}
}

// nested is a text part in depth multiparts.
func nested(depth int) string {
	if depth == 0 {
		return "Content-Type: text/plain\r\n\r\nhi"
	}
	b := fmt.Sprintf("b-%d-x", depth)
	return "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n" + nested(depth-1) + "\r\n--" + b + "--\r\n"
}

func TestNestedAtMaxDepth(t *testing.T) {
	msg := []byte("From: a@acme.test\r\n" + nested(maxDepth))
	if err := Check(msg); err != nil {
		t.Fatal(err)
	}
	in := input("news")
	checkViews(t, msg, renderAs(t, msg, in), in)
}
