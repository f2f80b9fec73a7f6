package compose

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/charmap"
)

const limitsHead = "From: a@acme.test\r\nX-Heed-List: news\r\n"

// mixed is a multipart/mixed message of the given parts.
func mixed(parts ...string) string {
	var b strings.Builder
	b.WriteString(limitsHead + "Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--b\r\n" + p + "\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.String()
}

// repeat is n copies of part.
func repeat(part string, n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = part
	}
	return ps
}

const (
	textPartSrc   = "Content-Type: text/plain\r\n\r\nhi"
	opaquePartSrc = "Content-Type: application/octet-stream\r\n\r\nx"
)

// checkRefused asserts that Check and marketing Render refuse msg with an
// error that says why, and that transactional Render sends its body as it
// came.
func checkRefused(t *testing.T, msg, why string) {
	t.Helper()
	if err := Check([]byte(msg)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), why) {
		t.Errorf("Check: %v, want ErrMalformed saying %q", err, why)
	}
	var b bytes.Buffer
	err := Render(&b, []byte(msg), input("news"))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), why) {
		t.Errorf("Render, marketing: %v, want ErrMalformed saying %q", err, why)
	}
	if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error text is not one line: %q", err)
	}
	out := renderAs(t, []byte(msg), input("account"))
	if !bytes.Equal(bodyOf(t, out), bodyOf(t, []byte(msg))) {
		t.Error("transactional body changed")
	}
}

// checkComposed asserts that Check accepts msg and marketing Render
// composes it as a reader must see it.
func checkComposed(t *testing.T, msg string) []view {
	t.Helper()
	if err := Check([]byte(msg)); err != nil {
		t.Fatalf("Check: %v", err)
	}
	in := input("news")
	out := renderAs(t, []byte(msg), in)
	checkViews(t, []byte(msg), out, in)
	return views(t, out)
}

func TestMaxParts(t *testing.T) {
	// The text part and maxParts-1 others; then one more.
	checkComposed(t, mixed(append([]string{textPartSrc}, repeat(opaquePartSrc, maxParts-1)...)...))
	checkRefused(t, mixed(append([]string{textPartSrc}, repeat(opaquePartSrc, maxParts)...)...), "more than 1000 MIME parts")
	// Multiparts count, at any depth.
	inner := "Content-Type: multipart/mixed; boundary=i\r\n\r\n" + strings.Repeat("--i\r\n"+opaquePartSrc+"\r\n", 9) + "--i--"
	parts := append([]string{textPartSrc}, repeat(inner, 99)...) // 991
	checkComposed(t, mixed(append(parts, repeat(opaquePartSrc, 9)...)...))
	checkRefused(t, mixed(append(parts, repeat(opaquePartSrc, 10)...)...), "more than 1000 MIME parts")
}

func TestMaxTextParts(t *testing.T) {
	// Every view of an alternative gets a footer: the most text one
	// message can make Render add.
	alt := func(n int) string {
		return strings.Replace(mixed(repeat(textPartSrc, n)...), "multipart/mixed", "multipart/alternative", 1)
	}
	vs := checkComposed(t, alt(maxTextParts))
	for _, v := range vs {
		if !v.footer || !strings.Contains(v.text, newsURL) {
			t.Fatalf("view %v has no footer:\n%s", v.path, v.text)
		}
	}
	checkRefused(t, alt(maxTextParts+1), "more than 50 text/plain or text/html parts")
	// Attachments do not count.
	checkComposed(t, mixed(append(repeat(textPartSrc, maxTextParts),
		repeat("Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nhi", 10)...)...))
}

func TestMaxPlaceholders(t *testing.T) {
	text := func(n int) string {
		return "Content-Type: text/plain\r\n\r\n" + strings.Repeat("{{heed_unsubscribe_url}} ", n/2) +
			strings.Repeat("{{heed_postal_address}} ", n-n/2)
	}
	// Spread over parts, quoted-printable in one: counted decoded.
	qp := "Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<p>=7B=7Bheed_unsubscribe_url}}</p>"
	checkComposed(t, mixed(text(maxPlaceholders-1), qp))
	checkRefused(t, mixed(text(maxPlaceholders), qp), "more than 100 {{heed_...}} placeholders")
	// What only looks like one is the app's text.
	checkComposed(t, mixed(text(maxPlaceholders), "Content-Type: text/plain\r\n\r\n{{heed_other}} {{heed_unsubscribe_url}"))
}

func TestMaxDepthError(t *testing.T) {
	checkRefused(t, limitsHead+nested(maxDepth+1), "multipart nested more than 32 deep")
}

// hostileParts is the message of the review, 2 MB of tiny text parts,
// with each part's header.
func hostileParts(n int, header string) []byte {
	var b bytes.Buffer
	b.WriteString(limitsHead + "Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for range n {
		b.WriteString("--b\r\n" + header + "\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

// allocated is the memory f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHostilePartsFailFast: 200,000 text parts (2 MB) once rendered to
// 32.8 MB, allocating 925 MB, for every recipient. Now marketing mail is
// refused after the first thousand parts and transactional mail goes as
// it came.
func TestHostilePartsFailFast(t *testing.T) {
	t.Run("text", func(t *testing.T) { checkHostile(t, hostileParts(200_000, "")) })
	// Then the limit on parts stops it.
	t.Run("opaque", func(t *testing.T) {
		checkHostile(t, hostileParts(200_000-1, "Content-Type: image/png\r\n"))
	})
}

func checkHostile(t *testing.T, msg []byte) {
	const most = 50 << 20
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"Check", func() error { return Check(msg) }},
		{"Render marketing", func() error { return Render(new(bytes.Buffer), msg, input("news")) }},
		{"Render transactional", func() error {
			var b bytes.Buffer
			if err := Render(&b, msg, input("account")); err != nil {
				return err
			}
			if b.Len() > len(msg)+4096 {
				return fmt.Errorf("%d octets rendered from %d", b.Len(), len(msg))
			}
			return errors.New("sent as it came")
		}},
	} {
		var err error
		start := time.Now()
		n := allocated(func() { err = c.run() })
		t.Logf("%s: %v in %v, %.1f MB allocated", c.name, err, time.Since(start), float64(n)/(1<<20))
		if err == nil || !errors.Is(err, ErrMalformed) && err.Error() != "sent as it came" {
			t.Errorf("%s: %v", c.name, err)
		}
		if n > most {
			t.Errorf("%s allocated %d MB, more than %d", c.name, n>>20, most>>20)
		}
	}
}

func TestCheckGrowth(t *testing.T) {
	f := newFiller(&Input{Kind: kindMarketing, Unsubscribe: true, UnsubscribeURL: newsURL, PostalAddress: postal})
	body := bytes.Repeat([]byte("x"), 1000)
	// Two rewritten parts of 100 and 200 octets, three placeholders.
	limit := len(body) + growthMargin + 3*f.footerLen()*(2+3) + 4*(100+200)
	for _, c := range []struct {
		size int
		ok   bool
	}{{limit, true}, {limit + 1, false}} {
		grown := c.size - len(body) + 100 // what the second edit must add
		edits := []edit{{0, 100, make([]byte, 100)}, {500, 700, make([]byte, grown+100)}}
		err := f.checkGrowth(len(body), edits, 3)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("a composed body of %d octets, %d allowed: %v", c.size, limit, err)
		}
	}
}

// TestGrowthWorstCases renders the messages that grow the most and checks
// the growth stays within what checkGrowth allows without its margin, but
// for a few hundred octets a part: the margin is slack, not needed.
func TestGrowthWorstCases(t *testing.T) {
	enc := func(e *charmap.Charmap, s string) string {
		b, err := e.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	thai := enc(charmap.Windows874, strings.Repeat("สวัสดีครับ", 3000))
	cyr := enc(charmap.KOI8R, strings.Repeat("Привет, мир! ", 3000))
	many := "Content-Type: text/html\r\n\r\n" + strings.Repeat("<p>{{heed_unsubscribe_url}}{{heed_postal_address}}</p>\n", maxPlaceholders/2)
	meta := "Content-Type: text/html; charset=us-ascii\r\n\r\n" + strings.Repeat("<meta charset=x>", 64) + "<p>hi</p>"
	for name, msg := range map[string]string{
		"Thai in 8-bit windows-874": limitsHead + "Content-Type: text/plain; charset=windows-874\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + thai,
		"Cyrillic in 8-bit KOI8-R":  limitsHead + "Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + cyr,
		"bare LFs":                  limitsHead + "Content-Type: text/plain\r\n\r\n" + strings.Repeat("\n", 30000),
		"50 empty views":            strings.Replace(mixed(repeat("", maxTextParts)...), "mixed", "alternative", 1),
		"100 placeholders":          mixed(many),
		"meta tags":                 strings.Replace(mixed(repeat(meta, maxTextParts)...), "mixed", "alternative", 1),
	} {
		t.Run(name, func(t *testing.T) {
			in := input("promo") // the long URL
			out := renderAs(t, []byte(msg), in)
			h, body, _ := Split([]byte(msg))
			leaves, _ := scan(&h, body)
			f := newFiller(&in)
			grown := len(bodyOf(t, out)) - len(body)
			without := 4*len(body) + 3*f.footerLen()*(len(leaves)+countPlaceholders(msg))
			t.Logf("%d octets grew by %d (%.2f times), %d allowed without the margin", len(body), grown,
				float64(len(body)+grown)/float64(len(body)), without)
			if grown > without+len(leaves)*1024 {
				t.Errorf("grew by %d, more than %d", grown, without)
			}
		})
	}
}

func TestMetaCharsetUTF8(t *testing.T) {
	pad := strings.Repeat(" ", metaWindow)
	for in, want := range map[string]string{
		`<meta charset="iso-8859-1">`:        `<meta charset="utf-8">`,
		`<META CharSet=windows-1252 />`:      `<META CharSet=utf-8 />`,
		`<meta charset='koi8-r'><p>`:         `<meta charset='utf-8'><p>`,
		`<meta charset="UTF-8">`:             `<meta charset="UTF-8">`,
		`<meta charset="">`:                  `<meta charset="">`,
		`<meta	name="x" charset = "gb2312">`: `<meta	name="x" charset = "utf-8">`,
		`<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">`:  `<meta http-equiv="Content-Type" content="text/html; charset=utf-8">`,
		`<meta content='text/html;charset="big5"' http-equiv=content-type>`:         `<meta content='text/html;charset="utf-8"' http-equiv=content-type>`,
		`<meta content="text/html; CHARSET = latin1; x" HTTP-EQUIV="CONTENT-TYPE">`: `<meta content="text/html; CHARSET = utf-8; x" HTTP-EQUIV="CONTENT-TYPE">`,
		// Both: the charset attribute is the one that counts.
		`<meta content="text/html; charset=a" http-equiv="Content-Type" charset=b>`: `<meta content="text/html; charset=a" http-equiv="Content-Type" charset=utf-8>`,
		// Not a declaration.
		`<meta name="description" content="our charset=latin1 sale">`: `<meta name="description" content="our charset=latin1 sale">`,
		`<metadata charset=x>`:                `<metadata charset=x>`,
		`<p charset=x>`:                       `<p charset=x>`,
		`<meta data-charset=x>`:               `<meta data-charset=x>`,
		`<meta charset="x`:                    `<meta charset="x`,
		`<meta charset=x`:                     `<meta charset=x`,
		pad + `<meta charset=x>`:              pad + `<meta charset=x>`,
		pad[10:] + `<meta charset=latin1>`:    pad[10:] + `<meta charset=latin1>`,
		pad[30:] + `<meta charset=latin1>`:    pad[30:] + `<meta charset=utf-8>`,
		`<meta charset=a><meta charset="b">`:  `<meta charset=utf-8><meta charset="utf-8">`,
		`<html><head><meta charset=a></head>`: `<html><head><meta charset=utf-8></head>`,
	} {
		if got := metaCharsetUTF8(in); got != want {
			t.Errorf("metaCharsetUTF8(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

// TestMetaCharsetOnlyWhenCharsetChanges: a UTF-8 part's meta tag is the
// app's business, and so is one in a part that does not change.
func TestMetaCharsetOnlyWhenCharsetChanges(t *testing.T) {
	html := "<html><head><meta charset=\"iso-8859-1\"></head><body>x</body></html>"
	for _, c := range []struct {
		charset, list string
		changed       bool
	}{
		{"iso-8859-1", "news", true},
		{"us-ascii", "news", true},
		{"utf-8", "news", false},
		{"iso-8859-1", "receipts", false},
	} {
		msg := "From: a@acme.test\r\nContent-Type: text/html; charset=" + c.charset + "\r\n\r\n" + html
		out := string(renderAs(t, []byte(msg), input(c.list)))
		if got := strings.Contains(out, `<meta charset="utf-8">`); got != c.changed {
			t.Errorf("%s, %s: meta charset rewritten %v, want %v:\n%s", c.charset, c.list, got, c.changed, out)
		}
	}
}

// TestEncodeShorter: text mostly outside ASCII goes as base64, not as a
// quoted-printable three times its size.
func TestEncodeShorter(t *testing.T) {
	cyr, err := charmap.KOI8R.NewEncoder().String(strings.Repeat("Привет, мир! ", 20))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, header, body, cte string }{
		{"8-bit KOI8-R", "Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit", cyr, "base64"},
		{"quoted-printable Japanese", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
			strings.Repeat("=E3=81=93=E3=82=93=E3=81=AB=E3=81=A1=E3=81=AF", 20), "base64"},
		{"quoted-printable French", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable",
			strings.Repeat("Le caf=E9 est servi. ", 20), ""},
		{"8-bit French", "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit",
			strings.Repeat("Le caf\xe9 est servi. ", 20), "quoted-printable"},
	} {
		msg := []byte("From: a@acme.test\r\n" + c.header + "\r\n\r\n" + c.body + "\r\n")
		in := input("news")
		out := renderAs(t, msg, in)
		h, _, _ := Split(out)
		want := c.cte
		if want == "" {
			want = "quoted-printable"
		}
		if got := h.Get("Content-Transfer-Encoding"); got != want {
			t.Errorf("%s: %s, want %s", c.name, got, want)
		}
		checkViews(t, msg, out, in)
	}
}
