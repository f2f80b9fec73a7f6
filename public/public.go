// Package public is Heed's public HTTP listener: the opt-out links in
// every marketing message lead here.
//
//   - POST /u/{token}: RFC 8058 one-click unsubscribe. Mailbox providers
//     POST List-Unsubscribe=One-Click (form-urlencoded or multipart/
//     form-data) with no cookie and no person watching, from anywhere; the
//     opt-out is on disk before the 200, a repeat changes nothing (it is
//     answered from a read), and the answer is never a redirect (RFC 8058
//     section 3.2). The page's own forms POST action=list, all or
//     resubscribe to the same URL; only those are held to the page's
//     origin (origin.go).
//   - GET and HEAD /u/{token}: the page a person sees from the link in the
//     footer: the business, the list, the address masked, buttons that
//     POST to leave this list or all of the business's marketing, and the
//     recipient's state on each marketing list; after a choice, an undo
//     (resubscribe) button, which takes back only the opt-out that this
//     link made, within Options.UndoWindow. In English or Spanish by
//     Accept-Language (catalogues in locales/), without JavaScript. GET
//     and HEAD never change anything: link scanners and prefetchers
//     follow every link.
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
	"slices"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/labstack/echo/v4"
)

// Options configure the handler.
type Options struct {
	OptOut *suppression.OptOut
	Logger *slog.Logger
	// Rate and Burst limit page views, the page's buttons and bad links
	// per client address (defaults 5 per second, bursts of 60); a POST
	// that records an opt-out is never limited.
	Rate, Burst float64
	// LinkRate and LinkBurst limit, per link, the POSTs that change
	// nothing (repeats of an opt-out on record) and the undos (defaults
	// one per 10 seconds, bursts of 5). A POST that records an opt-out is
	// never limited.
	LinkRate, LinkBurst float64
	// BaseURL is http.public.base_url. The page's forms are accepted from
	// its origin and from the request's own host, never cross-site.
	BaseURL string
	// UndoWindow is how long after an opt-out the link that made it can
	// still undo it (default 24 hours).
	UndoWindow time.Duration
	// Unavailable, when set, reports that the database is known to be
	// down (package health): the pages then answer 503 at once.
	Unavailable func() bool
	// Now is the clock of the limits and the undo window (time.Now when
	// nil); it must agree with the suppression store's, which dates the
	// opt-outs.
	Now func() time.Time
}

type server struct {
	Options
	limit  *limiter // per client address
	links  *limiter // per link
	origin *originCheck
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
	if o.LinkRate <= 0 {
		o.LinkRate = 0.1
	}
	if o.LinkBurst <= 0 {
		o.LinkBurst = 5
	}
	if o.UndoWindow <= 0 {
		o.UndoWindow = DefaultUndoWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &server{Options: o,
		limit:  newLimiter(o.Rate, o.Burst, o.Now),
		links:  newLimiter(o.LinkRate, o.LinkBurst, o.Now),
		origin: newOriginCheck(o.BaseURL, o.Logger),
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(securityHeaders)
	e.POST("/u/:token", s.post, s.refuseWhileDown)
	e.GET("/u/:token", s.page, s.refuseWhileDown)
	e.HEAD("/u/:token", s.page, s.refuseWhileDown)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	return e
}

// DefaultUndoWindow is how long an undo stays possible by default: a
// person who clicked by mistake undoes within minutes, and the shorter the
// window, the less a forwarded email can take back.
const DefaultUndoWindow = 24 * time.Hour

// securityHeaders: the pages embed nothing and are embedded nowhere, and a
// token must not leak to another site through Referer. same-origin rather
// than no-referrer: under no-referrer a browser sends "Origin: null" with
// the page's own forms (Fetch, "serialize a request origin"), and the
// origin check could not tell them from a sandboxed cross-site form.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// post records what a POST asks. A body with an action is one of the
// page's forms (action=list, all or resubscribe) and must come from the
// page's origin. Any other POST to a valid link is deliberate (prefetchers
// only GET) and leaves the link's list: RFC 8058's body
// (List-Unsubscribe=One-Click, from a mailbox provider's button, whose
// request carries no Origin or a foreign one) is channel one-click.
func (s *server) post(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxBody)
	tok := c.Param("token")
	action := c.FormValue("action")
	if action == "" {
		channel := "page"
		if c.FormValue("List-Unsubscribe") == "One-Click" {
			channel = "one-click"
		}
		return s.unsubscribe(c, tok, channel, false)
	}
	if err := s.origin.check(r); err != nil {
		// Debug: anyone can send these, and a log line each would be a
		// flood of its own.
		s.Logger.Debug("public: cross-origin form refused", "origin", r.Header.Get("Origin"),
			"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "err", err)
		return errCrossOrigin
	}
	switch action {
	case "resubscribe":
		return s.resubscribe(c, tok)
	case "all":
		return s.unsubscribe(c, tok, "page", true)
	default:
		return s.unsubscribe(c, tok, "page", false)
	}
}

// unsubscribe records an opt-out. One that is not on record yet is never
// refused, whatever the rates: a first opt-out is the law's, and Gmail's
// one-click POSTs for millions of readers come from a few addresses. A
// repeat changes nothing and is answered from a read, without a log line;
// repeats are what a flood is made of, so they are limited per link (and
// the page's per client address too).
func (s *server) unsubscribe(c echo.Context, tok, channel string, all bool) error {
	link, created, err := s.OptOut.Unsubscribe(c.Request().Context(), tok, channel, all)
	if errors.Is(err, suppression.ErrUnknownLink) {
		return s.limited(c, err) // guessing tokens costs a token
	}
	if err != nil {
		return err
	}
	if created {
		s.Logger.Info("public: unsubscribed", "tenant", link.Target.Tenant, "list", link.Target.List, "all", all, "channel", channel)
	} else if err := s.repeat(c, channel, link); err != nil {
		return err
	}
	// A one-click POST comes from a mailbox provider's machine: the
	// confirmation without the preference list, which nobody reads there.
	return s.render(c, http.StatusOK, view{State: stateDone, All: all, NoPrefs: channel == "one-click"}, &link)
}

// resubscribe undoes the opt-out this link made, if it made one within
// the undo window; anything else that stops the list gets a page saying
// so, which sends the reader to the business.
func (s *server) resubscribe(c echo.Context, tok string) error {
	if err := s.limited(c, nil); err != nil {
		return err
	}
	ctx := c.Request().Context()
	link, err := s.OptOut.Resolve(ctx, tok)
	if err != nil {
		return err
	}
	// Every undo is a person's, and each is a write and a webhook: limited
	// per link so that no one toggles a link into a stream of them.
	if err := s.linkLimited(c, link); err != nil {
		return err
	}
	undone, err := s.OptOut.Resubscribe(ctx, link, s.Now().Add(-s.UndoWindow))
	if len(undone) > 0 {
		s.Logger.Info("public: resubscribed", "tenant", link.Target.Tenant, "list", link.Target.List, "scopes", undone)
	}
	switch {
	case errors.Is(err, suppression.ErrNotUndoable) && len(undone) > 0:
		// Something was undone, so the answer is a success that says
		// plainly what still stops this list: a 409 "cannot be undone"
		// here would hide that the other lists resumed.
		all := slices.Contains(undone, suppression.All)
		return s.render(c, http.StatusOK, view{State: statePartlyUndone, All: all}, &link)
	case errors.Is(err, suppression.ErrNotUndoable):
		return s.render(c, http.StatusConflict, view{State: stateNotUndoable}, &link)
	case err != nil:
		return err
	}
	return s.render(c, http.StatusOK, view{State: stateResubscribed}, &link)
}

// repeat takes the tokens a POST that changed nothing costs: the link's,
// and for the page's buttons the client address's as well.
func (s *server) repeat(c echo.Context, channel string, link suppression.Link) error {
	if channel != "one-click" {
		if err := s.limited(c, nil); err != nil {
			return err
		}
	}
	return s.linkLimited(c, link)
}

// linkLimited takes a token from the link's bucket. The bucket is the
// target's, not the token string's, so the token of a rotated key shares it.
func (s *server) linkLimited(c echo.Context, link suppression.Link) error {
	t := link.Target
	if ok, wait := s.links.Allow(t.Tenant + "\x00" + t.List + "\x00" + t.Address); !ok {
		c.Response().Header().Set("Retry-After", retryAfter(wait))
		return errLinkTooMany
	}
	return nil
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

// errTooMany is the answer to a client over its rate, errLinkTooMany to
// a link over its own: the page says which, since a reader whose link a
// flood of repeats has limited has done nothing from their network.
var (
	errTooMany     = echo.NewHTTPError(http.StatusTooManyRequests)
	errLinkTooMany = echo.NewHTTPError(http.StatusTooManyRequests)
)

// errCrossOrigin is the answer to a page form sent from another site.
var errCrossOrigin = echo.NewHTTPError(http.StatusForbidden)

// limited takes a token from the client's bucket for a request that
// recorded nothing (a page view, or a POST that failed with err) and
// returns errTooMany when there is none, else err.
func (s *server) limited(c echo.Context, err error) error {
	ok, wait := s.limit.Allow(clientAddr(c.Request()))
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
	case errors.Is(err, txn.ErrUnavailable):
		// Nothing was recorded: a mailbox provider's one-click POST is
		// retried on a 5xx, and the page asks the reader to try again.
		status = http.StatusServiceUnavailable
		if !errors.Is(err, errDown) { // the health probe logged the outage once
			s.Logger.Error("public: database unavailable", "path", c.Path(), "err", err)
		}
	case errors.As(err, &he):
		status = he.Code
	default:
		s.Logger.Error("public: request failed", "path", c.Path(), "err", err)
	}
	state := stateError
	switch {
	case errors.Is(err, errLinkTooMany):
		state = stateBusyLink
	case status == http.StatusTooManyRequests:
		state = stateBusy
	case status == http.StatusForbidden:
		state = stateForbidden
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
	stateNotUndoable
	stateForbidden
	statePartlyUndone
	stateBusyLink
)

// titles are the catalogue keys of each state's title.
var titles = [...]string{
	stateChoose: "title.choose", stateDone: "title.done", stateResubscribed: "title.resubscribed",
	stateError: "title.error", stateBusy: "title.busy", stateNotUndoable: "title.notundoable",
	stateForbidden: "title.forbidden", statePartlyUndone: "title.partlyundone", stateBusyLink: "title.busy",
}

type view struct {
	State   int
	All     bool // the opt-out (or, partly undone, what was undone) was from all marketing
	NoPrefs bool // leave the preference list out
	// Filled by render from the link.
	Title, Lang, Business, List, Address string
	Prefs                                []suppression.ListState
	T                                    func(key string, args ...any) string
}

func (s *server) render(c echo.Context, status int, v view, link *suppression.Link) error {
	cat := pick(c.Request().Header.Get("Accept-Language"))
	v.Title, v.Lang, v.T = titles[v.State], cat.tag.String(), cat.T
	if link != nil {
		v.Business, v.Address = link.Tenant.Name, mask(link.Target.Address)
		v.List = link.List.Name
		if v.List == "" {
			v.List = link.List.ID
		}
		if !v.NoPrefs {
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
<title>{{call .T .Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}
button{font:inherit;padding:.6rem 1.2rem;margin:.3rem 0;border:0;border-radius:.3rem;background:#1d4ed8;color:#fff;cursor:pointer}
button.secondary{background:#374151}form{margin:0}ul{padding-left:1.2rem}</style>
</head><body><main>
{{if eq .State 7}}<h1 id="status">{{call .T .Title}}</h1>
<p>{{if .All}}{{call .T "partlyundone.all" .Address .List .Business}}{{else}}{{call .T "partlyundone.list" .Address .List .Business}}{{end}}</p>
<p>{{call .T "notundoable.contact" .Business}}</p>
{{else if eq .State 6}}<h1>{{call .T .Title}}</h1>
<p>{{call .T "forbidden.text"}}</p>
{{else if eq .State 5}}<h1 id="status">{{call .T .Title}}</h1>
<p>{{call .T "notundoable.text" .Address .List .Business}}</p>
<p>{{call .T "notundoable.contact" .Business}}</p>
{{else if eq .State 8}}<h1>{{call .T "title.busy"}}</h1>
<p>{{call .T "busy.link"}}</p>
{{else if eq .State 4}}<h1>{{call .T "title.busy"}}</h1>
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
