package compose

import (
	"bytes"
	"errors"
	"html"
	"strings"
	"testing"
)

// FuzzRender renders any message for a marketing list, a transactional
// list and a transactional list with unsubscribe. It must not panic; a
// rendering must parse, carry exactly Heed's header fields and keep the
// body's structure; and Check must agree with Render on marketing mail.
// Besides the package's own reading of the output, go-message reads it
// (checkIndependently). The seed corpus is testdata/fuzz/FuzzRender: the
// golden inputs and broken MIME.
func FuzzRender(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		checkErr := Check(msg)
		var vin inputViews
		vin.views, vin.parts, vin.err = readViews(msg)
		for _, list := range []string{"news", "receipts", "account"} {
			in := input(list)
			s := &fakeSigner{}
			in.Signer = s
			var b bytes.Buffer
			err := Render(&b, msg, in)
			if list == "news" && errors.Is(err, ErrMalformed) != (checkErr != nil) {
				t.Fatalf("Check says %v, Render of marketing mail says %v", checkErr, err)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s: %v", list, err)
				}
				if _, _, serr := Split(msg); serr == nil && in.Kind == kindTransactional {
					t.Fatalf("%s: transactional mail refused for its body: %v", list, err)
				}
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Fatalf("error text is not one line: %q", err)
				}
				continue
			}
			checkRendering(t, msg, b.Bytes(), in)
			checkIndependently(t, msg, &vin, b.Bytes(), s.signed, in)
		}
	})
}

// checkRendering checks one successful rendering of msg.
func checkRendering(t *testing.T, msg, out []byte, in Input) {
	checkHeaders(t, out, in, true)
	h, body, _ := Split(msg)
	before, berr := scan(&h, body)
	oh, obody, _ := Split(out)
	after, aerr := scan(&oh, obody)
	if berr == nil && (aerr != nil || len(after) != len(before)) {
		t.Fatalf("%s: %d text parts before, %d after (%v)", in.List, len(before), len(after), aerr)
	}
	if in.Kind != kindMarketing {
		return
	}
	if err := Check(out); err != nil {
		t.Fatalf("the rendering of marketing mail does not pass Check: %v", err)
	}
	for i := range after {
		l := &after[i]
		var b strings.Builder
		if err := l.decode(obody[l.bodyStart:l.end], &b); err != nil {
			t.Fatal(err)
		}
		text := b.String()
		if l.footer {
			for _, s := range []string{in.UnsubscribeURL, "Acme Corp"} {
				if !strings.Contains(text, s) {
					t.Fatalf("%s lacks %q:\n%s", l.where, s, text)
				}
			}
		}
		if strings.Contains(text, urlPlaceholder) || strings.Contains(text, addrPlaceholder) {
			t.Fatalf("%s keeps a placeholder:\n%s", l.where, text)
		}
	}
}

// checkIndependently checks a rendering of msg as go-message reads it,
// trusting nothing of the code under test (signed is the message as
// signed, out without the signature):
//
//   - marketing mail: no "{{heed_" in a text/plain or text/html body part
//     but those of the input that were no placeholder, and the opt-out
//     link in the parts that carry the footer; no more parts, text parts
//     and placeholders than the limits allow;
//   - the size: the input, plus 64 KiB for the fields Heed writes and
//     re-encoding's slack and 4 KiB for the fields on top, plus four times the input for re-encoding, plus three
//     footers for each text part and placeholder (growthMargin and
//     checkGrowth);
//   - transactional mail without a placeholder: the body as it came.
func checkIndependently(t *testing.T, msg []byte, iv *inputViews, out, signed []byte, in Input) {
	vin, nin, inErr := iv.views, iv.parts, iv.err
	vout, nout, outErr := readViews(signed)
	if inErr == nil && outErr != nil {
		t.Fatalf("%s: go-message reads the input but not the rendering: %v", in.List, outErr)
	}
	if outErr == nil && inErr == nil && (len(vout) != len(vin) || nout != nin) {
		t.Fatalf("%s: %d leaves and %d parts before, %d and %d after", in.List, len(vin), nin, len(vout), nout)
	}
	count := func(vs []view, s string) (n int) {
		for _, v := range vs {
			if v.body {
				n += strings.Count(v.text, s)
			}
		}
		return n
	}
	// Placeholders in the input: when it cannot be read, as many as the
	// limit allows.
	placeholders := maxPlaceholders
	if inErr == nil {
		placeholders = count(vin, urlPlaceholder) + count(vin, addrPlaceholder)
	}
	texts := 0
	for _, v := range vout {
		if v.body {
			texts++
		}
	}
	// A footer, generously: the URL escaped, the address, markup.
	footer := 2*(len(html.EscapeString(in.UnsubscribeURL))+len(in.PostalAddress)) + 256
	// 4 KiB more for the fields Heed puts on top.
	if max := len(msg) + 68<<10 + 4*len(msg) + 3*footer*(texts+placeholders); len(signed) > max {
		t.Fatalf("%s: %d octets rendered from %d, more than %d (%d text parts, %d placeholders)",
			in.List, len(signed), len(msg), max, texts, placeholders)
	}
	if !bytes.HasSuffix(out, signed) {
		t.Fatalf("%s: the output is not the signature on top of what was signed", in.List)
	}

	switch {
	case in.Kind == kindMarketing:
		if inErr != nil {
			t.Fatalf("marketing mail rendered that go-message cannot read: %v", inErr)
		}
		if nin > maxParts || texts > maxTextParts || placeholders > maxPlaceholders {
			t.Fatalf("marketing mail rendered with %d parts, %d text parts, %d placeholders", nin, texts, placeholders)
		}
		// Render fills every placeholder and adds none: what is left of
		// "{{heed_" is the app's own text.
		want := count(vin, placeholderPrefix) - placeholders
		if got := count(vout, placeholderPrefix); got != want {
			t.Fatalf("%d %q left in the text parts, want %d (the input's %d, %d of them placeholders)",
				got, placeholderPrefix, want, count(vin, placeholderPrefix), placeholders)
		}
		footers := 0
		for _, v := range vout {
			if v.body && v.err != nil {
				t.Fatalf("part %v of marketing mail cannot be read: %v", v.path, v.err)
			}
			if v.footer {
				footers++
				if !strings.Contains(v.text, html.EscapeString(in.UnsubscribeURL)) {
					t.Fatalf("part %v (%s) lacks the opt-out:\n%s", v.path, v.mediaType, v.text)
				}
			}
		}
		if footers == 0 {
			t.Fatalf("no part carries the opt-out")
		}
	case inErr == nil && placeholders == 0 && !anyUnread(vin):
		if !bytes.Equal(bodyOf(t, out), bodyOf(t, msg)) {
			t.Fatalf("%s: the body of transactional mail without placeholders changed", in.List)
		}
	}
}

// inputViews is what readViews returns for the input.
type inputViews struct {
	views []view
	parts int
	err   error
}

// anyUnread reports whether a body part could not be decoded: whether it
// holds a placeholder is not known.
func anyUnread(vs []view) bool {
	for _, v := range vs {
		if v.body && v.err != nil {
			return true
		}
	}
	return false
}
