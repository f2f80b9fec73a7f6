// Package public is Heed's public HTTP listener: the opt-out links in
// every marketing message lead here.
//
//   - POST /u/{token}: RFC 8058 one-click unsubscribe. Mailbox providers
//     POST List-Unsubscribe=One-Click (form-urlencoded or multipart/
//     form-data) with no cookie and no person watching; the opt-out is on
//     disk before the 200, a repeat changes nothing, and the answer is
//     never a redirect (RFC 8058 section 3.2).
//   - GET and HEAD /u/{token}: the page a person sees from the link in the
//     footer: the business, the list, the address masked, buttons that
//     POST to leave this list or all of the business's marketing, and the
//     recipient's state on each marketing list; after a choice, an undo
//     (resubscribe) button. In English or Spanish by Accept-Language
//     (catalogues in locales/), without JavaScript. GET and HEAD never
//     change anything: link scanners and prefetchers follow every link.
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
	"time"

	"github.com/heedmail/heed/suppression"
	"github.com/labstack/echo/v4"
)

// Options configure the handler.
type Options struct {
	OptOut *suppression.OptOut
	Logger *slog.Logger
	// Rate and Burst limit page views, the page's buttons and bad links
	// per client address (defaults 5 per second, bursts of 60); an RFC
	// 8058 one-click POST that records an opt-out is never limited.
	Rate, Burst float64
	Now         func() time.Time
}

type server struct {
	Options
	limit *limiter
}

// maxBody bounds a POST: the one-click body is 26 bytes.
const maxBody = 64 << 10

// New returns the public HTTP handler.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.Burst <= 0 {
		o.Burst = 60
	}
	s := &server{Options: o, limit: newLimiter(o.Rate, o.Burst, o.Now)}
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

// oneClick records what a POST asks. RFC 8058's body
// (List-Unsubscribe=One-Click, from a mailbox provider's button) leaves
// the link's list; the page's buttons send action=list, all or
// resubscribe. Any POST to a valid link is deliberate (prefetchers only
// GET), so one without a known action leaves the list too.
func (s *server) oneClick(c echo.Context) error {
	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxBody)
	ctx, tok := c.Request().Context(), c.Param("token")
	action, channel := c.FormValue("action"), "page"
	if action == "" {
		action = "list"
		if c.FormValue("List-Unsubscribe") == "One-Click" {
			channel = "one-click"
		}
	}
	// Only RFC 8058's one-click POST is never limited (a provider's POSTs
	// for many readers share addresses); the page's buttons are a person's
	// and are limited like page views, so nobody can toggle a link into
	// a stream of writes and webhooks.
	if channel != "one-click" {
		if err := s.limited(c, nil); err != nil {
			return err
		}
	}
	var link suppression.Link
	var err error
	state := stateDone
	switch action {
	case "resubscribe":
		link, err = s.OptOut.Resubscribe(ctx, tok, channel)
		state = stateResubscribed
	case "all":
		link, err = s.OptOut.Unsubscribe(ctx, tok, channel, true)
	default:
		action = "list"
		link, err = s.OptOut.Unsubscribe(ctx, tok, channel, false)
	}
	if errors.Is(err, suppression.ErrUnknownLink) && channel == "one-click" {
		return s.limited(c, err) // guessing tokens costs a token
	}
	if err != nil {
		return err
	}
	s.Logger.Info("public: "+action, "tenant", link.Target.Tenant, "list", link.Target.List, "channel", channel)
	// A one-click POST comes from a mailbox provider's machine: the
	// confirmation without the preference list, which nobody reads there.
	return s.render(c, http.StatusOK, view{State: state, All: action == "all", NoPrefs: channel == "one-click"}, &link)
}

func (s *server) page(c echo.Context) error {
	if err := s.limited(c, nil); err != nil {
		return err
	}
	link, err := s.OptOut.Resolve(c.Request().Context(), c.Param("token"))
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, view{State: stateChoose}, &link)
}

// errTooMany is the answer to a client over its rate.
var errTooMany = echo.NewHTTPError(http.StatusTooManyRequests)

// limited takes a token from the client's bucket for a request that
// recorded nothing (a page view, or a POST that failed with err) and
// returns errTooMany when there is none, else err.
func (s *server) limited(c echo.Context, err error) error {
	ok, wait := s.limit.allow(clientAddr(c.Request()))
	if !ok {
		c.Response().Header().Set("Retry-After", retryAfter(wait))
		return errTooMany
	}
	return err
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
	state := stateError
	if status == http.StatusTooManyRequests {
		state = stateBusy
	}
	_ = s.render(c, status, view{State: state}, nil)
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

// Page states.
const (
	stateChoose = iota
	stateDone
	stateResubscribed
	stateError
	stateBusy
)

type view struct {
	State   int
	All     bool // the opt-out was from all marketing
	NoPrefs bool // leave the preference list out
	// Filled by render from the link.
	Lang, Business, List, Address string
	Prefs                         []suppression.ListState
	T                             func(key string, args ...any) string
}

func (s *server) render(c echo.Context, status int, v view, link *suppression.Link) error {
	cat := pick(c.Request().Header.Get("Accept-Language"))
	v.Lang, v.T = cat.tag.String(), cat.T
	if link != nil {
		v.Business, v.Address = link.Tenant.Name, mask(link.Target.Address)
		v.List = link.List.Name
		if v.List == "" {
			v.List = link.List.ID
		}
		if v.State != stateError && !v.NoPrefs {
			prefs, err := s.OptOut.Preferences(c.Request().Context(), *link)
			if err != nil {
				s.Logger.Error("public: preferences", "err", err)
			}
			v.Prefs = prefs
		}
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/html; charset=utf-8")
	h.Set("Content-Language", v.Lang)
	h.Add("Vary", "Accept-Language")
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	return pageTemplate.Execute(c.Response(), v)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="{{.Lang}}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{if eq .State 4}}{{call .T "title.busy"}}{{else if eq .State 3}}{{call .T "title.error"}}{{else if eq .State 1}}{{call .T "title.done"}}{{else if eq .State 2}}{{call .T "title.resubscribed"}}{{else}}{{call .T "title.choose"}}{{end}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}
button{font:inherit;padding:.6rem 1.2rem;margin:.3rem 0;border:0;border-radius:.3rem;background:#1d4ed8;color:#fff;cursor:pointer}
button.secondary{background:#374151}form{margin:0}ul{padding-left:1.2rem}</style>
</head><body><main>
{{if eq .State 4}}<h1>{{call .T "title.busy"}}</h1>
<p>{{call .T "busy.text"}}</p>
{{else if eq .State 3}}<h1>{{call .T "title.error"}}</h1>
<p>{{call .T "error.text"}}</p>
{{else if eq .State 1}}<h1 id="status">{{call .T "title.done"}}</h1>
<p>{{if .All}}{{call .T "done.all" .Address .Business}}{{else}}{{call .T "done.list" .Address .List .Business}}{{end}}</p>
<p>{{call .T "done.note"}}</p>
<form method="post"><input type="hidden" name="action" value="resubscribe">
<button type="submit" class="secondary">{{call .T "button.resubscribe"}}</button></form>
{{else if eq .State 2}}<h1 id="status">{{call .T "title.resubscribed"}}</h1>
<p>{{call .T "resubscribed.text" .Address .List .Business}}</p>
{{else}}<h1>{{call .T "title.choose"}}</h1>
<p>{{call .T "choose.text" .Business .Address}}</p>
<form method="post"><input type="hidden" name="action" value="list">
<button type="submit">{{call .T "button.list" .List}}</button></form>
<form method="post"><input type="hidden" name="action" value="all">
<button type="submit" class="secondary">{{call .T "button.all" .Business}}</button></form>
{{end}}{{if .Prefs}}<h2>{{call .T "prefs.title" .Business}}</h2>
<ul>{{range .Prefs}}<li>{{if .List.Name}}{{.List.Name}}{{else}}{{.List.ID}}{{end}}: {{if .Suppressed}}{{call $.T "prefs.off"}}{{else}}{{call $.T "prefs.on"}}{{end}}</li>{{end}}</ul>
{{end}}</main></body></html>
`))
