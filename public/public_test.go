package public

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

type env struct {
	t    *testing.T
	url  string
	db   *store.DB
	sup  *suppression.BoltStore
	keys *suppression.Keyring
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := tenant.NewRegistry(tenant.NewBoltStore(db))
	ctx := context.Background()
	for _, id := range []string{"acme", "other"} {
		if err := reg.CreateTenant(ctx, tenant.Tenant{ID: id, Name: strings.ToUpper(id) + " Dental <&>", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, db: db,
		sup:  suppression.NewBoltStore(db, []byte("public test hash key, 32 bytes.."), time.Now),
		keys: suppression.NewKeyring(1, map[byte][]byte{1: bytes.Repeat([]byte{1}, 32)}),
	}
	srv := httptest.NewServer(New(Options{OptOut: &suppression.OptOut{Store: e.sup, Keys: e.keys, Registry: reg}}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *env) token(tn, list, addr string) string {
	return e.keys.Token(suppression.Target{Tenant: tn, List: list, Address: addr})
}

// do sends a request without following redirects.
func (e *env) do(req *http.Request) (*http.Response, string) {
	e.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *env) post(tok, contentType string, body io.Reader) (*http.Response, string) {
	req, _ := http.NewRequest("POST", e.url+"/u/"+tok, body)
	req.Header.Set("Content-Type", contentType)
	return e.do(req)
}

func (e *env) entries(tn, addr string) []suppression.Entry {
	es, err := e.sup.Lookup(context.Background(), tn, addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

// TestOneClick: RFC 8058's POST, form-urlencoded and multipart, records
// the opt-out before the 200, is idempotent, never redirects, and writes
// recipient.unsubscribed once.
func TestOneClick(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	form := url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()
	for i := range 2 {
		resp, body := e.post(tok, "application/x-www-form-urlencoded", strings.NewReader(form))
		if resp.StatusCode != 200 || resp.Header.Get("Location") != "" || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("POST %d: %d, Location %q, cookie %q", i, resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Set-Cookie"))
		}
		if !strings.Contains(body, "You are unsubscribed") || !strings.Contains(body, "p***@example.net") {
			t.Errorf("POST %d page: %s", i, body)
		}
		// On disk when the answer came.
		es := e.entries("acme", "pat@example.net")
		if len(es) != 1 || es[0].List != "marketing" || es[0].Reason != suppression.Unsubscribe || es[0].Channel != "one-click" {
			t.Fatalf("entries after POST %d: %+v", i, es)
		}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("List-Unsubscribe", "One-Click")
	mw.Close()
	tok2 := e.token("acme", "marketing", "sam@example.net")
	if resp, _ := e.post(tok2, mw.FormDataContentType(), &buf); resp.StatusCode != 200 {
		t.Fatalf("multipart POST: %d", resp.StatusCode)
	}
	if len(e.entries("acme", "sam@example.net")) != 1 {
		t.Error("multipart POST recorded nothing")
	}
	evs, _ := events.BoltLog{DB: e.db}.Events(context.Background(), "acme", 0, 100)
	n := 0
	for _, ev := range evs {
		if ev.Type == events.RecipientUnsubscribed {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d recipient.unsubscribed events, want 2 (one per recipient, none for the repeat)", n)
	}
}

// TestPageChangesNothing: GET and HEAD (link scanners, prefetchers) show
// the page and record nothing; its button posts back to the same link.
func TestPageChangesNothing(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	for _, m := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(m, e.url+"/u/"+tok, nil)
		resp, body := e.do(req)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", m, resp.StatusCode)
		}
		if m == "GET" {
			for _, want := range []string{"ACME Dental &lt;&amp;&gt;", "Marketing", "p***@example.net", `method="post"`, `lang="en"`} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q:\n%s", want, body)
				}
			}
			if strings.Contains(body, "pat@example.net") {
				t.Error("the page shows the whole address")
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") ||
			resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s headers: CSP %q, Referrer-Policy %q", m, csp, resp.Header.Get("Referrer-Policy"))
		}
	}
	if es := e.entries("acme", "pat@example.net"); len(es) != 0 {
		t.Errorf("GET/HEAD recorded %+v", es)
	}
}

// TestBadLinks: every kind of bad token gets the same 404 page and
// changes nothing.
func TestBadLinks(t *testing.T) {
	e := newEnv(t)
	good := e.token("acme", "marketing", "pat@example.net")
	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == '-' || flipped[len(flipped)/2] == '_' {
		flipped[len(flipped)/2] = 'A'
	}
	otherKeys := suppression.NewKeyring(1, map[byte][]byte{1: bytes.Repeat([]byte{2}, 32)})
	bad := map[string]string{
		"truncated":        good[:len(good)-3],
		"one char flipped": string(flipped),
		"another key":      otherKeys.Token(suppression.Target{Tenant: "acme", List: "marketing", Address: "pat@example.net"}),
		"deleted tenant":   e.token("gone", "marketing", "pat@example.net"),
		"unknown list":     e.token("acme", "no-such-list", "pat@example.net"),
		"garbage":          "not-a-token",
	}
	var first string
	for name, tok := range bad {
		for _, m := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(m, e.url+"/u/"+tok, strings.NewReader("List-Unsubscribe=One-Click"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body := e.do(req)
			if resp.StatusCode != 404 {
				t.Errorf("%s %s: %d, want 404", m, name, resp.StatusCode)
			}
			if first == "" {
				first = body
			} else if body != first {
				t.Errorf("%s %s: a different page, which tells bad links apart", m, name)
			}
		}
	}
	for _, tn := range []string{"acme", "other", "gone"} {
		if es := e.entries(tn, "pat@example.net"); len(es) != 0 {
			t.Errorf("%s: a bad link recorded %+v", tn, es)
		}
	}
}
