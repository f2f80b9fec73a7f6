package public

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testclock"
	"github.com/heedmail/heed/suppression"
)

type env struct {
	t     *testing.T
	url   string
	db    *store.DB
	sup   *suppression.Service
	keys  *suppression.Keyring
	clock *testclock.Clock
	logs  *logRecorder
}

// logRecorder keeps the handler's log records.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many records of level there are.
func (l *logRecorder) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the options changed by opts first.
func newEnvWith(t *testing.T, opts func(*Options)) *env {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := tenant.NewRegistry(boltdb.Tenants(db))
	ctx := context.Background()
	for _, id := range []string{"acme", "other"} {
		if err := reg.CreateTenant(ctx, tenant.Tenant{ID: id, Name: strings.ToUpper(id) + " Dental <&>", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, db: db,
		clock: testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)),
		logs:  &logRecorder{},
		keys:  suppression.NewKeyring(1, map[byte][]byte{1: bytes.Repeat([]byte{1}, 32)}),
	}
	e.sup = boltdb.Suppressions(db, []byte("public test hash key, 32 bytes.."), e.clock.Now)
	o := Options{
		OptOut: &suppression.OptOut{Store: e.sup, Keys: e.keys, Registry: reg},
		Logger: slog.New(e.logs), Now: e.clock.Now,
	}
	if opts != nil {
		opts(&o)
	}
	srv := httptest.NewServer(New(o))
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
	evs, _ := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 100)
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
			resp.Header.Get("Referrer-Policy") != "same-origin" {
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

// TestPageChoices: a person leaves all marketing from the page, sees the
// confirmation and the state of each list, and undoes it; the undo takes
// back the opt-out the page made, never a bounce, and says both: that the
// choice is undone and that the mail stays stopped while the bounce is
// there.
func TestPageChoices(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	form := func(action string) (*http.Response, string) {
		return e.post(tok, "application/x-www-form-urlencoded", strings.NewReader("action="+action))
	}
	resp, body := form("all")
	if resp.StatusCode != 200 || !strings.Contains(body, "no longer receive marketing emails from ACME Dental") ||
		!strings.Contains(body, "Marketing: unsubscribed") || !strings.Contains(body, `value="resubscribe"`) {
		t.Fatalf("after all: %d\n%s", resp.StatusCode, body)
	}
	es := e.entries("acme", "pat@example.net")
	if len(es) != 1 || es[0].List != suppression.All || es[0].Channel != "page" {
		t.Fatalf("entries %+v, want one all-marketing opt-out from the page", es)
	}
	ctx := context.Background()
	e.sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: suppression.All, Reason: suppression.Bounce})
	resp, body = form("resubscribe")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Your choice to stop all marketing emails from ACME Dental") ||
		!strings.Contains(body, "still does not receive Marketing emails") {
		t.Fatalf("resubscribe over a bounce: %d\n%s", resp.StatusCode, body)
	}
	es = e.entries("acme", "pat@example.net")
	if len(es) != 1 || es[0].Reason != suppression.Bounce {
		t.Errorf("after resubscribe %+v, want the bounce alone", es)
	}
	evs, _ := boltdb.Events(e.db).Events(ctx, "acme", 0, 100)
	var got []events.Type
	for _, ev := range evs {
		if ev.Type == events.RecipientUnsubscribed || ev.Type == events.RecipientResubscribed {
			got = append(got, ev.Type)
		}
	}
	if len(got) != 2 || got[0] != events.RecipientUnsubscribed || got[1] != events.RecipientResubscribed {
		t.Errorf("events %v", got)
	}
}

// TestSpanish: the page speaks the reader's language when it can, and
// English otherwise.
func TestSpanish(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	for lang, want := range map[string]string{
		"es-MX,es;q=0.9,en;q=0.5": "Darse de baja",
		"fr-FR, de;q=0.8":         "Unsubscribe",
		"":                        "Unsubscribe",
		";;;garbage":              "Unsubscribe",
	} {
		req, _ := http.NewRequest("GET", e.url+"/u/"+tok, nil)
		req.Header.Set("Accept-Language", lang)
		resp, body := e.do(req)
		if !strings.Contains(body, "<h1>"+want+"</h1>") {
			t.Errorf("Accept-Language %q: want %q in\n%s", lang, want, body)
		}
		if want == "Darse de baja" && (!strings.Contains(body, `lang="es`) || resp.Header.Get("Content-Language") == "en") {
			t.Errorf("Spanish page not labelled Spanish: %s", resp.Header.Get("Content-Language"))
		}
	}
}

// TestCatalogsComplete: every language has every string.
func TestCatalogsComplete(t *testing.T) {
	en := catalogs[0]
	for _, c := range catalogs[1:] {
		for k := range en.strings {
			if _, ok := c.strings[k]; !ok {
				t.Errorf("%s lacks %q", c.tag, k)
			}
		}
		for k := range c.strings {
			if _, ok := en.strings[k]; !ok {
				t.Errorf("%s has %q, which English lacks", c.tag, k)
			}
		}
	}
}

// TestRateLimit: page views and bad links are limited per client
// address; a POST that records an opt-out never is.
func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	reg := tenant.NewRegistry(boltdb.Tenants(e.db))
	srv := httptest.NewServer(New(Options{
		OptOut: &suppression.OptOut{Store: e.sup, Keys: e.keys, Registry: reg},
		Rate:   0.001, Burst: 3,
	}))
	defer srv.Close()
	e.url = srv.URL
	page := e.url + "/u/" + e.token("acme", "marketing", "pat@example.net")
	for i := range 3 {
		if resp, _ := e.do(mustReq("GET", page)); resp.StatusCode != 200 {
			t.Fatalf("view %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := e.do(mustReq("GET", page))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "try again") ||
		!strings.Contains(body, "too many requests from your network") {
		t.Fatalf("4th view: %d, Retry-After %q\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for i := range 20 {
		tok := e.token("acme", "marketing", "reader-"+strings.Repeat("x", i)+"@example.net")
		if resp, _ := e.post(tok, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click")); resp.StatusCode != 200 {
			t.Fatalf("one-click %d over the limit: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := e.post("forged", "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click")); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a bad link over the limit: %d, want 429", resp.StatusCode)
	}
}

func mustReq(method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return req
}
