package public

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// TestBaseURLOrigin: behind a proxy that passes its own Host, the page's
// forms come with the base URL's origin, which is trusted; another origin
// still is not.
func TestBaseURLOrigin(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(New(Options{
		OptOut:  &suppression.OptOut{Store: e.sup, Keys: e.keys, Registry: tenant.NewRegistry(boltdb.Tenants(e.db))},
		BaseURL: "https://unsubscribe.example.com/", Now: e.clock.Now,
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

// TestBaseURLOriginNormalised: a base_url written with an explicit
// default port or an upper-case host names the same origin a browser
// sends (lower case, no default port, RFC 6454 section 6.1), so the
// page's forms behind a proxy are accepted; another port or scheme still
// is not.
func TestBaseURLOriginNormalised(t *testing.T) {
	for _, c := range []struct {
		base, origin string
		ok           bool
	}{
		{"https://unsubscribe.example.com:443", "https://unsubscribe.example.com", true},
		{"https://Unsubscribe.EXAMPLE.com/", "https://unsubscribe.example.com", true},
		{"HTTPS://UNSUBSCRIBE.example.com:443/u/", "https://unsubscribe.example.com", true},
		{"http://unsubscribe.example.com:80", "http://unsubscribe.example.com", true},
		{"https://[2001:DB8::1]:443", "https://[2001:db8::1]", true},
		{"https://unsubscribe.example.com:8443", "https://unsubscribe.example.com:8443", true},
		{"https://unsubscribe.example.com:8443", "https://unsubscribe.example.com", false},
		{"http://unsubscribe.example.com:443", "https://unsubscribe.example.com", false},
		{"https://unsubscribe.example.com:443", "http://unsubscribe.example.com", false},
	} {
		o := newOriginCheck(c.base, slog.New(slog.DiscardHandler))
		for _, hdr := range []string{"Origin", "Referer"} {
			r := httptest.NewRequest("POST", "http://127.0.0.1:8080/u/tok", nil)
			r.Header.Set(hdr, c.origin)
			if hdr == "Referer" {
				r.Header.Set(hdr, c.origin+"/u/tok")
			}
			if err := o.check(r); (err == nil) != c.ok {
				t.Errorf("base_url %q, %s %q: check = %v, want ok %v", c.base, hdr, c.origin, err, c.ok)
			}
		}
	}
}
