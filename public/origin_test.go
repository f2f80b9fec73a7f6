package public

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// TestBaseURLOrigin: behind a proxy that passes its own Host, the page's
// forms come with the base URL's origin, which is trusted; another origin
// still is not.
func TestBaseURLOrigin(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(New(Options{
		OptOut:  &suppression.OptOut{Store: e.sup, Keys: e.keys, Registry: tenant.NewRegistry(tenant.NewBoltStore(e.db))},
		BaseURL: "https://unsubscribe.example.com/", Now: e.clock.now,
	}))
	defer srv.Close()
	e.url = srv.URL
	tok := e.token("acme", "marketing", "pat@example.net")
	for _, c := range []struct {
		hdr  map[string]string
		want int
	}{
		{map[string]string{"Origin": "https://unsubscribe.example.com", "Sec-Fetch-Site": ""}, http.StatusOK},
		{map[string]string{"Origin": "https://unsubscribe.example.com", "Sec-Fetch-Site": "cross-site"}, http.StatusOK},
		{map[string]string{"Origin": "", "Sec-Fetch-Site": "", "Referer": "https://unsubscribe.example.com/u/" + tok}, http.StatusOK},
		{map[string]string{"Origin": "http://unsubscribe.example.com", "Sec-Fetch-Site": ""}, http.StatusForbidden},
		{map[string]string{"Origin": "https://example.com", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
	} {
		if resp, _ := e.form(tok, "list", c.hdr); resp.StatusCode != c.want {
			t.Errorf("%v: %d, want %d", c.hdr, resp.StatusCode, c.want)
		}
	}
}
