// Package public is Heed's public HTTP listener: the opt-out links in
// every marketing message lead here.
//
//   - POST /u/{token}: RFC 8058 one-click unsubscribe. Mailbox providers
//     POST List-Unsubscribe=One-Click (form-urlencoded or multipart/
//     form-data) with no cookie and no person watching; the opt-out is on
//     disk before the 200, a repeat changes nothing, and the answer is
//     never a redirect (RFC 8058 section 3.2).
//   - GET and HEAD /u/{token}: the page a person sees from the link in the
//     footer, naming the business and the list, with a button that POSTs.
//     They never change anything: link scanners and prefetchers follow
//     every link in a message.
//
// A forged, damaged or stale token gets one and the same 404 page. The
// domain work (tokens, the suppression list) is package suppression's;
// echo stays here, at the edge.
package public

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"

	"github.com/heedmail/heed/suppression"
	"github.com/labstack/echo/v4"
)

// Options configure the handler.
type Options struct {
	OptOut *suppression.OptOut
	Logger *slog.Logger
}

type server struct{ Options }

// maxBody bounds a POST: the one-click body is 26 bytes.
const maxBody = 64 << 10

// New returns the public HTTP handler.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{o}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(securityHeaders)
	e.POST("/u/:token", s.oneClick)
	e.GET("/u/:token", s.page)
	e.HEAD("/u/:token", s.page)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	return e
}

// securityHeaders: the pages embed nothing and are embedded nowhere, and a
// token must not leak to another site through Referer.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// oneClick records the opt-out. Any POST to a valid link unsubscribes
// from its list: RFC 8058 asks for List-Unsubscribe=One-Click in the body,
// and the page's own button sends the same; a body without it is still a
// deliberate POST to this recipient's link, never a prefetch.
func (s *server) oneClick(c echo.Context) error {
	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxBody)
	channel := "page"
	if c.FormValue("List-Unsubscribe") == "One-Click" && c.FormValue("source") != "page" {
		channel = "one-click"
	}
	link, err := s.OptOut.Unsubscribe(c.Request().Context(), c.Param("token"), channel)
	if err != nil {
		return err
	}
	s.Logger.Info("public: unsubscribed", "tenant", link.Target.Tenant, "list", link.Target.List, "channel", channel)
	return render(c, http.StatusOK, view{Done: true, Business: link.Tenant.Name, List: listName(link), Address: mask(link.Target.Address)})
}

func (s *server) page(c echo.Context) error {
	link, err := s.OptOut.Resolve(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, view{Business: link.Tenant.Name, List: listName(link), Address: mask(link.Target.Address)})
}

func listName(l suppression.Link) string {
	if l.List.Name != "" {
		return l.List.Name
	}
	return l.List.ID
}

// handleError answers an unknown link and every other failure with a
// page; an internal error is logged and is a 500, never a redirect.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := http.StatusInternalServerError
	var he *echo.HTTPError
	switch {
	case errors.Is(err, suppression.ErrUnknownLink):
		status = http.StatusNotFound
	case errors.As(err, &he):
		status = he.Code
	default:
		s.Logger.Error("public: request failed", "path", c.Path(), "err", err)
	}
	_ = render(c, status, view{Error: status})
}

// mask shows enough of an address for its owner to recognise it and not
// enough for anyone else to read it from a screen: a***@example.com.
func mask(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "***"
	}
	r := []rune(addr[:at])
	return string(r[0]) + "***" + addr[at:]
}

type view struct {
	Done                    bool
	Error                   int
	Business, List, Address string
}

func render(c echo.Context, status int, v view) error {
	c.Response().Header().Set(echo.HeaderContentType, "text/html; charset=utf-8")
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	return pageTemplate.Execute(c.Response(), v)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{if .Error}}Link not found{{else if .Done}}Unsubscribed{{else}}Unsubscribe{{end}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:.3rem;background:#1d4ed8;color:#fff;cursor:pointer}</style>
</head><body><main>
{{if .Error}}<h1>This link does not work</h1>
<p>The link may be incomplete. Please open it again from the email you received.</p>
{{else if .Done}}<h1>You are unsubscribed</h1>
<p>{{.Address}} will no longer receive <strong>{{.List}}</strong> emails from <strong>{{.Business}}</strong>.</p>
{{else}}<h1>Unsubscribe</h1>
<p>Stop sending <strong>{{.List}}</strong> emails from <strong>{{.Business}}</strong> to {{.Address}}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="source" value="page">
<button type="submit">Unsubscribe</button></form>
{{end}}</main></body></html>
`))
