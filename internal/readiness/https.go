package readiness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ProbePath is the one-click URL the report POSTs to. It is not a token
// Heed could have made (tokens are signed), so Heed's public handler
// answers it with its page for an unknown link, 404, and records nothing:
// the probe shows that the endpoint is Heed's, reachable and does not
// redirect, without opting anybody out.
const ProbePath = "/u/readiness-probe"

// heedCSP is part of the Content-Security-Policy of Heed's public pages,
// which tells Heed's 404 from another server's.
const heedCSP = "form-action 'self'"

// certWarnBefore is how long before a certificate's expiry the report
// warns.
const certWarnBefore = 14 * 24 * time.Hour

// httpProbe POSTs to the one-click endpoint.
type httpProbe struct{ client *http.Client }

func newHTTPProbe(r *net.Resolver, roots *x509.CertPool) *httpProbe {
	d := &net.Dialer{Resolver: r}
	return &httpProbe{client: &http.Client{
		Transport: &http.Transport{
			DialContext:       d.DialContext,
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true, // a report every few minutes at most
		},
		// RFC 8058 section 3.2: the one-click POST must not be redirected,
		// so a redirect is what the probe reports, not follows.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// httpChecks: base_url over HTTPS with a valid certificate (https), and
// Heed's one-click endpoint behind it answering a POST (one_click).
func (c *Checker) httpChecks(ctx context.Context) []Check {
	base := strings.TrimSuffix(c.o.BaseURL, "/")
	h := Check{Name: "https", Expected: base + " over HTTPS with a certificate valid for its host"}
	oc := Check{Name: "one_click", Expected: "POST " + base + ProbePath + " answered 404 by Heed's public handler, without a redirect (RFC 8058 section 3.2)"}
	notProbed := func(why string) []Check {
		oc.Status, oc.Found = Fail, "not probed: "+why
		oc.Fix = "Fix the https check first."
		return []Check{h, oc}
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" {
		h.Status, h.Found = Fail, "http.public.base_url is "+c.o.BaseURL
		h.Fix = "Serve the public listener behind HTTPS and set http.public.base_url to its https:// URL: providers use one-click unsubscribe only over HTTPS (RFC 8058 section 3)."
		return notProbed("base_url is not HTTPS")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+ProbePath, strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		h.Status, h.Found, h.Fix = Fail, err.Error(), "Correct http.public.base_url."
		return notProbed("base_url is not a URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.client.Do(req)
	if err != nil {
		h.Status, h.Found, h.Fix = httpFailure(err, u.Hostname())
		return notProbed("no answer over HTTPS")
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	h.Status, h.Found = OK, "valid certificate for "+u.Hostname()
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		leaf := resp.TLS.PeerCertificates[0]
		issuer := leaf.Issuer.CommonName
		if issuer == "" && len(leaf.Issuer.Organization) > 0 {
			issuer = leaf.Issuer.Organization[0]
		}
		h.Found += fmt.Sprintf(", issued by %s, valid until %s", issuer, leaf.NotAfter.UTC().Format(time.DateOnly))
		if leaf.NotAfter.Sub(c.o.Now()) < certWarnBefore {
			h.Status, h.Fix = Warn, "Renew the certificate of "+u.Hostname()+": it expires within two weeks."
		}
	}
	oc.Status, oc.Found, oc.Fix = oneClickVerdict(resp)
	return []Check{h, oc}
}

// httpFailure says why the HTTPS request failed. A bad certificate and a
// server that does not answer fail; a name that could not be looked up
// is the DNS's trouble, a warning.
func httpFailure(err error, host string) (Status, string, string) {
	var verr *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	var de *net.DNSError
	switch {
	case errors.As(err, &verr), errors.As(err, &uae), errors.As(err, &he), errors.As(err, &ce):
		return Fail, "certificate not valid: " + unwrapURL(err),
			"Install a certificate for " + host + " from a public CA (Let's Encrypt, for one): mailbox providers do not POST to a server they cannot verify."
	case errors.As(err, &de) && !de.IsTimeout:
		return Warn, "could not look up: " + lookupError(de), "Try again; if it persists, publish an A/AAAA record for " + host + "."
	case errors.Is(err, context.DeadlineExceeded):
		return Warn, "no answer before the report's time ran out", "Try again; if it persists, check that " + host + " answers on port 443."
	}
	return Fail, "no answer over HTTPS: " + unwrapURL(err), "Serve Heed's public listener at " + host + " over HTTPS (a TLS proxy in front of http.public.listen)."
}

func unwrapURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// oneClickVerdict judges the answer to the probe.
func oneClickVerdict(resp *http.Response) (Status, string, string) {
	found := fmt.Sprintf("POST %s → %s", ProbePath, resp.Status)
	heed := strings.Contains(resp.Header.Get("Content-Security-Policy"), heedCSP)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return Fail, found + " to " + resp.Header.Get("Location"),
			"Point http.public.base_url at Heed's public listener itself: one-click POSTs must not be redirected (RFC 8058 section 3.2)."
	case (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest) && heed:
		return OK, found + " from Heed's public handler", ""
	case resp.StatusCode == http.StatusTooManyRequests && heed:
		return Warn, found + ": Heed's public handler limits this client", "Try again in a minute."
	}
	return Fail, found + ", not from Heed's public handler",
		"Route " + ProbePath[:3] + "* at http.public.base_url to Heed's public listener (http.public.listen)."
}
