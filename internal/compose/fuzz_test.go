package compose

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzRender renders any message for a marketing list, a transactional
// list and a transactional list with unsubscribe. It must not panic; a
// rendering must parse, carry exactly Heed's header fields and keep the
// body's structure; and Check must agree with Render on marketing mail.
// The seed corpus is testdata/fuzz/FuzzRender: the golden inputs and
// broken MIME.
func FuzzRender(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg []byte) {
		checkErr := Check(msg)
		for _, list := range []string{"news", "receipts", "account"} {
			in := input(list)
			in.Signer = &fakeSigner{}
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
		for _, s := range []string{in.UnsubscribeURL, "Acme Corp"} {
			if !strings.Contains(text, s) {
				t.Fatalf("%s lacks %q:\n%s", l.where, s, text)
			}
		}
		if strings.Contains(text, urlPlaceholder) || strings.Contains(text, addrPlaceholder) {
			t.Fatalf("%s keeps a placeholder:\n%s", l.where, text)
		}
	}
}
