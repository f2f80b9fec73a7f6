package public

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// form posts one of the page's forms to tok, with the headers a browser
// on the page itself sends unless hdr says otherwise.
func (e *env) form(tok, action string, hdr map[string]string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/u/"+tok, strings.NewReader("action="+action))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.url)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return e.do(req)
}

func (e *env) oneClick(tok string, hdr map[string]string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/u/"+tok, strings.NewReader("List-Unsubscribe=One-Click"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

// count returns how many events of typ acme's log holds.
func (e *env) count(typ events.Type) int {
	e.t.Helper()
	evs, err := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// writes is how many pages the database has written: every commit
// writes at least its meta page, a read writes none.
func (e *env) writes() int64 {
	st := e.db.Bolt().Stats()
	return st.TxStats.GetWrite()
}

// TestUndoLiftsOnlyThisLinksOptOut: someone holding a link (a forwarded
// email is enough) presses undo; opt-outs made through the API, by mail,
// or through another link of the same recipient stay, and the page says
// they cannot be undone there and to contact the business.
func TestUndoLiftsOnlyThisLinksOptOut(t *testing.T) {
	ctx := context.Background()
	for name, made := range map[string]func(e *env){
		"api": func(e *env) {
			e.sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: suppression.All,
				Reason: suppression.Unsubscribe, Channel: "api"}, events.RecipientUnsubscribed)
		},
		"mailto": func(e *env) {
			e.sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: "marketing",
				Reason: suppression.Unsubscribe, Channel: "mailto"}, events.RecipientUnsubscribed)
		},
		"another link": func(e *env) {
			other := e.token("acme", "transactional", "pat@example.net")
			if resp, _ := e.form(other, "all", nil); resp.StatusCode != 200 {
				t.Fatalf("opt-out through the other link: %d", resp.StatusCode)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			made(e)
			before := e.entries("acme", "pat@example.net")
			if len(before) != 1 {
				t.Fatalf("entries %+v", before)
			}
			e.clock.Add(time.Minute)
			resp, body := e.form(e.token("acme", "marketing", "pat@example.net"), "resubscribe", nil)
			if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "can no longer be undone") ||
				!strings.Contains(body, "please contact ACME Dental") {
				t.Errorf("undo: %d\n%s", resp.StatusCode, body)
			}
			if after := e.entries("acme", "pat@example.net"); len(after) != 1 || after[0] != before[0] {
				t.Errorf("entries after undo %+v, want %+v", after, before)
			}
			if n := e.count(events.RecipientResubscribed); n != 0 {
				t.Errorf("%d recipient.resubscribed events", n)
			}
		})
	}
}

// TestUndoAfterLaterOptOut: a one-click opt-out, then the recipient opts
// out of the same list by mail as well, or the tenant adds it through the
// API, or another of the recipient's links leaves all marketing on top of
// the same link's "all": whoever holds the first link (a forwarded email)
// cannot undo it any more, the page says so, and the opt-out stays.
func TestUndoAfterLaterOptOut(t *testing.T) {
	ctx := context.Background()
	add := func(channel string) func(e *env) {
		return func(e *env) {
			_, err := e.sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: "marketing",
				Reason: suppression.Unsubscribe, Channel: channel}, events.RecipientUnsubscribed)
			if err != nil {
				e.t.Fatal(err)
			}
		}
	}
	for name, c := range map[string]struct {
		first  func(e *env, tok string)
		second func(e *env)
	}{
		"one-click then mailto": {func(e *env, tok string) { e.oneClick(tok, nil) }, add("mailto")},
		"one-click then api":    {func(e *env, tok string) { e.oneClick(tok, nil) }, add("api")},
		"all then another link's all": {func(e *env, tok string) { e.form(tok, "all", nil) }, func(e *env) {
			if resp, _ := e.form(e.token("acme", "transactional", "pat@example.net"), "all", nil); resp.StatusCode != 200 {
				e.t.Fatalf("the other link's all: %d", resp.StatusCode)
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			tok := e.token("acme", "marketing", "pat@example.net")
			c.first(e, tok)
			e.clock.Add(time.Minute)
			c.second(e)
			before := e.entries("acme", "pat@example.net")
			if len(before) != 1 {
				t.Fatalf("entries %+v", before)
			}
			e.clock.Add(time.Minute)
			resp, body := e.form(tok, "resubscribe", nil)
			if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "can no longer be undone") ||
				!strings.Contains(body, "please contact ACME Dental") {
				t.Errorf("undo: %d\n%s", resp.StatusCode, body)
			}
			if after := e.entries("acme", "pat@example.net"); len(after) != 1 || after[0].List != before[0].List {
				t.Errorf("entries after undo %+v, want %+v", after, before)
			}
			if n := e.count(events.RecipientResubscribed); n != 0 {
				t.Errorf("%d recipient.resubscribed events", n)
			}
		})
	}
}

// TestUndoPartly: the recipient's opt-out of the list is older than the
// undo window (or the tenant made it through the API), and they have just
// left all marketing through the same link. Undo takes back the "all" —
// the other marketing lists resume — and the page says so, and says
// plainly that this list stays stopped and whom to ask: a success page,
// not a 409 claiming nothing could be undone. The reverse (a block of all
// mail, then the link's list opt-out undone) says the same of the list.
func TestUndoPartly(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]struct {
		before   func(e *env, tok string)
		action   string
		lang     string
		want     []string
		wantLeft string // the scope of the entry that stays
	}{
		"list opt-out older than the window": {
			before: func(e *env, tok string) {
				e.oneClick(tok, nil)
				e.clock.Add(25 * time.Hour)
			},
			action: "all",
			want: []string{`<h1 id="status">Undone, except for this list</h1>`,
				"Your choice to stop all marketing emails from ACME Dental &lt;&amp;&gt; is undone",
				"p***@example.net still does not receive Marketing emails", "please contact ACME Dental",
				"News: subscribed", "Marketing: unsubscribed"},
			wantLeft: "marketing",
		},
		"list opt-out by the API, in Spanish": {
			before: func(e *env, _ string) {
				e.sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: "marketing",
					Reason: suppression.Unsubscribe, Channel: "api"}, events.RecipientUnsubscribed)
			},
			action: "all", lang: "es",
			want: []string{`<h1 id="status">Deshecho, salvo esta lista</h1>`,
				"Se ha deshecho su elección de no recibir ningún correo de marketing",
				"p***@example.net sigue sin recibir los correos de Marketing", "póngase en contacto con ACME Dental",
				"News: suscrito"},
			wantLeft: "marketing",
		},
		"block of all, then the link's list opt-out": {
			before: func(e *env, _ string) {
				e.sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: suppression.All,
					Reason: suppression.Manual, Channel: "api"})
			},
			action: "list",
			want: []string{"Your choice to leave Marketing is undone",
				"p***@example.net still does not receive Marketing emails from ACME Dental", "please contact ACME Dental"},
			wantLeft: suppression.All,
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			reg := boltdb.Tenants(e.db)
			if err := reg.PutList(ctx, tenant.List{Tenant: "acme", ID: "news", Name: "News", Kind: tenant.Marketing}); err != nil {
				t.Fatal(err)
			}
			tok := e.token("acme", "marketing", "pat@example.net")
			c.before(e, tok)
			if resp, _ := e.form(tok, c.action, nil); resp.StatusCode != 200 {
				t.Fatalf("%s: %d", c.action, resp.StatusCode)
			}
			resubscribed := e.count(events.RecipientResubscribed)
			e.clock.Add(time.Minute)
			resp, body := e.form(tok, "resubscribe", map[string]string{"Accept-Language": c.lang})
			if resp.StatusCode != http.StatusOK {
				t.Errorf("undo: %d, want 200\n%s", resp.StatusCode, body)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Errorf("undo page lacks %q\n%s", w, body)
				}
			}
			if es := e.entries("acme", "pat@example.net"); len(es) != 1 || es[0].List != c.wantLeft {
				t.Errorf("entries after undo %+v, want the %s one alone", es, c.wantLeft)
			}
			if n := e.count(events.RecipientResubscribed) - resubscribed; n != 1 {
				t.Errorf("%d recipient.resubscribed events, want 1", n)
			}
		})
	}
}

// TestUndoWithinWindow: the link that made an opt-out undoes it a day
// later less a second, from the page and after a one-click POST alike,
// and the recipient gets the list again.
func TestUndoWithinWindow(t *testing.T) {
	e := newEnv(t)
	pat := e.token("acme", "marketing", "pat@example.net")
	sam := e.token("acme", "marketing", "sam@example.net")
	if resp, _ := e.form(pat, "all", nil); resp.StatusCode != 200 {
		t.Fatalf("all: %d", resp.StatusCode)
	}
	if resp, _ := e.oneClick(sam, nil); resp.StatusCode != 200 {
		t.Fatalf("one-click: %d", resp.StatusCode)
	}
	e.clock.Add(24*time.Hour - time.Second)
	for who, tok := range map[string]string{"pat@example.net": pat, "sam@example.net": sam} {
		resp, body := e.form(tok, "resubscribe", nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "You are subscribed again") || !strings.Contains(body, "Marketing: subscribed") {
			t.Errorf("undo for %s: %d\n%s", who, resp.StatusCode, body)
		}
		if es := e.entries("acme", who); len(es) != 0 {
			t.Errorf("%s: entries after undo %+v", who, es)
		}
	}
	if n := e.count(events.RecipientResubscribed); n != 2 {
		t.Errorf("%d recipient.resubscribed events, want 2", n)
	}
}

// TestUndoAfterWindow: a day after the opt-out, the link's undo is
// refused with the page that sends the reader to the business, and the
// opt-out stays.
func TestUndoAfterWindow(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	if resp, _ := e.form(tok, "list", nil); resp.StatusCode != 200 {
		t.Fatalf("list: %d", resp.StatusCode)
	}
	e.clock.Add(24*time.Hour + time.Second)
	resp, body := e.form(tok, "resubscribe", nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "<h1 id=\"status\">This can no longer be undone here</h1>") ||
		!strings.Contains(body, "p***@example.net is still unsubscribed from Marketing emails") ||
		!strings.Contains(body, "please contact ACME Dental") || strings.Contains(body, `value="resubscribe"`) {
		t.Errorf("late undo: %d\n%s", resp.StatusCode, body)
	}
	if es := e.entries("acme", "pat@example.net"); len(es) != 1 || es[0].List != "marketing" {
		t.Errorf("entries after a late undo %+v", es)
	}
	if n := e.count(events.RecipientResubscribed); n != 0 {
		t.Errorf("%d recipient.resubscribed events", n)
	}
}

// TestCrossOriginForms: another site's form (or one a browser says is
// cross-site) is refused with 403 and changes nothing; RFC 8058's POST,
// which comes from a mailbox provider with a foreign Origin or none,
// still records the opt-out.
func TestCrossOriginForms(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	if resp, _ := e.form(tok, "list", nil); resp.StatusCode != 200 {
		t.Fatalf("list: %d", resp.StatusCode)
	}
	before := e.entries("acme", "pat@example.net")
	foreign := []map[string]string{
		{"Origin": "https://evil.example", "Sec-Fetch-Site": ""},
		{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		{"Origin": "null", "Sec-Fetch-Site": ""}, // a sandboxed frame's form
		{"Origin": "", "Sec-Fetch-Site": "same-site"},
		{"Origin": "", "Sec-Fetch-Site": "", "Referer": "https://evil.example/page"},
	}
	for _, hdr := range foreign {
		for _, action := range []string{"resubscribe", "all"} {
			resp, body := e.form(tok, action, hdr)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "sent from another website") {
				t.Errorf("%s with %v: %d\n%s", action, hdr, resp.StatusCode, body)
			}
		}
	}
	if after := e.entries("acme", "pat@example.net"); len(after) != 1 || after[0] != before[0] {
		t.Errorf("entries after cross-origin forms %+v, want %+v", after, before)
	}
	if n := e.count(events.RecipientResubscribed); n != 0 {
		t.Errorf("%d recipient.resubscribed events", n)
	}
	sam := e.token("acme", "marketing", "sam@example.net")
	resp, _ := e.oneClick(sam, map[string]string{"Origin": "https://mail.example", "Sec-Fetch-Site": "cross-site"})
	if es := e.entries("acme", "sam@example.net"); resp.StatusCode != 200 || len(es) != 1 || es[0].Channel != "one-click" {
		t.Errorf("one-click from a foreign origin: %d, entries %+v", resp.StatusCode, es)
	}
}

// TestRepeatsDoNotWrite: after the first one-click POST, repeats are
// answered 200 from a read: no commit, no event, no info log line.
func TestRepeatsDoNotWrite(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	if resp, _ := e.oneClick(tok, nil); resp.StatusCode != 200 {
		t.Fatalf("first POST: %d", resp.StatusCode)
	}
	writes, infos := e.writes(), e.logs.count(slog.LevelInfo)
	for i := range 5 {
		resp, body := e.oneClick(tok, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "You are unsubscribed") {
			t.Fatalf("repeat %d: %d", i, resp.StatusCode)
		}
	}
	if w := e.writes(); w != writes {
		t.Errorf("5 repeats wrote %d pages, want none", w-writes)
	}
	if n := e.logs.count(slog.LevelInfo); n != infos || infos != 1 {
		t.Errorf("info log lines: %d after the first POST, %d after the repeats; want 1 and 1", infos, n)
	}
	if n := e.count(events.RecipientUnsubscribed); n != 1 {
		t.Errorf("%d recipient.unsubscribed events, want 1", n)
	}
}

// TestRepeatFloodLimited: repeats with one token beyond a small burst get
// 429 with Retry-After; under that flood another recipient's first opt-out
// is recorded and answered 200, and so is a first opt-out on the flooded
// link itself (one an operator lifted meanwhile).
func TestRepeatFloodLimited(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")
	if resp, _ := e.oneClick(tok, nil); resp.StatusCode != 200 {
		t.Fatalf("first POST: %d", resp.StatusCode)
	}
	limited := 0
	for range 50 {
		resp, body := e.oneClick(tok, nil)
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "try again") {
				t.Fatalf("429 without Retry-After or page: %q\n%s", resp.Header.Get("Retry-After"), body)
			}
			// The reader's network did nothing wrong: the page must
			// not say it did.
			if !strings.Contains(body, "This link was used many times in a short while") || strings.Contains(body, "your network") {
				t.Fatalf("the per-link 429 page does not say it is the link's limit:\n%s", body)
			}
			limited++
		default:
			t.Fatalf("repeat: %d", resp.StatusCode)
		}
	}
	if limited < 40 {
		t.Errorf("%d of 50 repeats in one instant limited, want most", limited)
	}
	sam := e.token("acme", "marketing", "sam@example.net")
	if resp, _ := e.oneClick(sam, nil); resp.StatusCode != 200 || len(e.entries("acme", "sam@example.net")) != 1 {
		t.Errorf("another link's first opt-out under the flood: %d", resp.StatusCode)
	}
	if _, err := e.sup.Remove(context.Background(), "acme", "pat@example.net", "marketing", suppression.Unsubscribe); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.oneClick(tok, nil); resp.StatusCode != 200 || len(e.entries("acme", "pat@example.net")) != 1 {
		t.Errorf("a first opt-out on the flooded link: %d, entries %+v", resp.StatusCode, e.entries("acme", "pat@example.net"))
	}
	// The bucket refills with time.
	e.clock.Add(time.Minute)
	if resp, _ := e.oneClick(tok, nil); resp.StatusCode != 200 {
		t.Errorf("a repeat a minute later: %d", resp.StatusCode)
	}
}

// TestOneClickMultipartForeignOrigin: the multipart one-click body from a
// foreign origin is one-click too, never mistaken for the page's form.
func TestOneClickMultipartForeignOrigin(t *testing.T) {
	e := newEnv(t)
	body := "--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n"
	req, _ := http.NewRequest("POST", e.url+"/u/"+e.token("acme", "marketing", "pat@example.net"), strings.NewReader(body))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	req.Header.Set("Origin", "https://evil.example")
	if resp, _ := e.do(req); resp.StatusCode != 200 {
		t.Fatalf("multipart one-click: %d", resp.StatusCode)
	}
	if es := e.entries("acme", "pat@example.net"); len(es) != 1 || es[0].Channel != "one-click" {
		t.Errorf("entries %+v", es)
	}
}
