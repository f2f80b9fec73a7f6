package public

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// originCheck holds the page's own forms (action=list, all, resubscribe)
// to the page's origin, so that another site cannot make a visitor's
// browser press them. RFC 8058's one-click POST is not held to it: a
// mailbox provider sends it from its own machines, with no Origin or a
// foreign one, and it must work from anywhere (section 3.1: no cookie, no
// context).
//
// net/http's CrossOriginProtection does the browser part: Sec-Fetch-Site
// when the browser sends it (every current one does), otherwise Origin
// against the request's Host, and requests with neither pass (not a
// browser, which could send anything anyway). The configured base URL's
// origin is trusted besides, for a listener behind a proxy that rewrites
// Host. What it does not do is look at Referer, which an older browser
// sends when it sends no Origin; a foreign one is refused here.
type originCheck struct {
	cop  *http.CrossOriginProtection
	base string // scheme://host of the base URL, or ""
}

var errForeignReferer = errors.New("the Referer is another site")

func newOriginCheck(baseURL string, log *slog.Logger) *originCheck {
	o := &originCheck{cop: http.NewCrossOriginProtection()}
	if u, err := url.Parse(baseURL); err == nil && u.Scheme != "" && u.Host != "" {
		o.base = originOf(u)
		if err := o.cop.AddTrustedOrigin(o.base); err != nil {
			log.Warn("public: the base URL's origin is not trusted by the form check", "base_url", baseURL, "err", err)
			o.base = ""
		}
	}
	return o
}

// check returns nil when r may be one of the page's forms.
func (o *originCheck) check(r *http.Request) error {
	if err := o.cop.Check(r); err != nil {
		return err
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "" {
		return nil // decided above
	}
	ref := r.Header.Get("Referer")
	if ref == "" {
		return nil
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host != r.Host && (o.base == "" || originOf(u) != o.base) {
		return errForeignReferer
	}
	return nil
}

// originOf is u's origin serialised as a browser sends it in Origin
// (RFC 6454 sections 4 and 6.1): scheme and host in lower case, the port
// only when it is not the scheme's default. An operator's base_url may
// say "https://Unsubscribe.Example.com:443"; trusted as written, it would
// never match what the browser sends, and every form behind a proxy that
// rewrites Host would be refused.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == defaultPorts[scheme] {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal keeps its brackets
	}
	return scheme + "://" + host
}

var defaultPorts = map[string]string{"http": "80", "https": "443"}
