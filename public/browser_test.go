package public

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/internal/browsertest"
)

// TestBrowserUnsubscribe drives a real browser through the page a person
// sees from the footer link: open it, press unsubscribe, see the
// confirmation, undo; and another site's copy of the page's form, which
// the browser sends and Heed refuses. With HEED_SCREENSHOTS=DIR it writes a PNG of each
// step there (docs/screenshots holds the ones the README shows).
func TestBrowserUnsubscribe(t *testing.T) {
	e := newEnv(t)
	tok := e.token("acme", "marketing", "pat@example.net")

	ctx := browsertest.Start(t, 420, 780, 60*time.Second) // a phone

	shots := os.Getenv("HEED_SCREENSHOTS")
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Another site (another origin: the browser says cross-site or
	// same-site, and sends its Origin) with a copy of the page's button.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/u/%s"><input type="hidden" name="action" value="all"><button type="submit">Win a prize</button></form>`, e.url, tok)
	}))
	defer evil.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL), chromedp.Click(chromedp.CSS("button")),
		chromedp.WaitVisible(chromedp.Search(`//h1[contains(., "Please use the page")]`))); err != nil {
		t.Fatal(err)
	}
	if es := e.entries("acme", "pat@example.net"); len(es) != 0 {
		t.Fatalf("another site's form recorded %+v", es)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.url+"/u/"+tok), chromedp.WaitVisible(chromedp.CSS("h1"))); err != nil {
		t.Fatal(err)
	}
	shot("1-landing")
	if h := text("h1"); h != "Unsubscribe" {
		t.Fatalf("landing heading %q", h)
	}
	if len(e.entries("acme", "pat@example.net")) != 0 {
		t.Fatal("opening the page recorded an opt-out")
	}
	// The first button: leave this list.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button")), chromedp.WaitVisible(chromedp.CSS("#status"))); err != nil {
		t.Fatal(err)
	}
	shot("2-unsubscribed")
	if m := text("main"); !strings.Contains(m, "You are unsubscribed") || !strings.Contains(m, "Marketing: unsubscribed") {
		t.Fatalf("after the click:\n%s", m)
	}
	es := e.entries("acme", "pat@example.net")
	if len(es) != 1 || es[0].List != "marketing" || es[0].Channel != "page" {
		t.Fatalf("entries %+v", es)
	}
	// Undo.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button")),
		chromedp.WaitVisible(chromedp.Search(`//h1[@id="status" and contains(., "subscribed again")]`))); err != nil {
		t.Fatal(err)
	}
	shot("3-resubscribed")
	if m := text("main"); !strings.Contains(m, "Marketing: subscribed") {
		t.Errorf("after undo:\n%s", m)
	}
	if es := e.entries("acme", "pat@example.net"); len(es) != 0 {
		t.Errorf("entries after undo %+v", es)
	}
}
