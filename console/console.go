// Package console is Heed's web console: server-rendered pages under
// /console/ on the admin listener, for operators and for the people of
// each tenant (docs/console.md). Templates and the stylesheet are
// embedded in the binary; the pages work without JavaScript, and a
// little of it, in one file of static/, adds what only a script can (a
// live tail, copy buttons), under a strict Content-Security-Policy.
//
// The console is a listener like the admin API and goes through the same
// code: its users are authorised by internal/access, the rule the API
// applies to tenant API keys, and its changes are the suppression
// package's calls the API makes, recorded in the audit log under
// "console:<username>".
package console

import (
	"context"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/access"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/netlimit"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/ratelimit"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console. Users and Tenants are required.
type Options struct {
	Users        *consoleusers.Service
	Tenants      *tenant.Registry
	Suppressions suppression.Store
	// Events is the event log, counted on the overview (nil: no counts).
	Events events.Reader
	// OverviewMaxEvents bounds the events the overview reads per tenant
	// per page view (0: 100,000), so that a busy tenant's chart costs a
	// bounded read.
	OverviewMaxEvents int
	// Messages finds a message by id for the Messages page (nil: none).
	Messages MessageReader
	// Captures are capture mode's copies of messages, shown from the
	// Messages page (nil: not in capture mode), as the API's /captured.
	Captures admin.Captures
	// QueueDepth and WebhookBacklog are shown to operators (nil: not shown).
	QueueDepth     func() (int, error)
	WebhookBacklog func(ctx context.Context) (int, error)
	// Audit keeps the record of every change, as for the API.
	Audit admin.AuditLog
	// Changes runs a change and its audit record in one transaction, the
	// runner the admin API is given (admin.Options.Changes). Without it a
	// change's record is appended after the change, in a transaction of
	// its own.
	Changes txn.Runner[admin.Tx]
	// Hostname is the relay's name, in the SPF advice of the Domains page.
	Hostname string
	// LookupTXT resolves TXT records for the DNS check of a domain and
	// before a key is activated (nil: no check).
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// Readiness makes the readiness reports of domains (nil: none).
	Readiness *readiness.Checker
	// Webhooks manages the tenants' webhook endpoints, as for the admin
	// API (nil: no Webhooks pages).
	Webhooks *webhooks.Manager
	// Privacy answers privacy requests, as for the admin API (nil: no
	// Privacy requests page).
	Privacy *privacy.Service
	// AllowNetworks are the networks the console answers (empty: all).
	AllowNetworks []netip.Prefix
	// MaxAttemptsPerUser and MaxAttemptsPerClient are the sign-in
	// attempts (password or code) a username and a client may make in
	// AttemptWindow; past them an attempt is refused unchecked.
	MaxAttemptsPerUser, MaxAttemptsPerClient int
	AttemptWindow                            time.Duration
	// Stop is closed when the listener shuts down: open live tails end
	// then, or http.Server.Shutdown would wait for them (nil: never).
	Stop   <-chan struct{}
	Logger *slog.Logger
	Now    func() time.Time
}

// Prefix is the path the console is served under.
const Prefix = "/console/"

type server struct {
	Options
	pages    map[string]*template.Template
	byUser   *ratelimit.Limiter[string]
	byClient *ratelimit.Limiter[netip.Addr]
	good     lastGood
	// tail wakes the Events page's live tails (nil: the log announces
	// nothing, and the page has no tail).
	tail *tail
}

// maxBuckets bounds each sign-in limiter's table (ratelimit evicts the
// least recently used beyond it).
const maxBuckets = 10000

// New returns the console's handler, to be mounted at Prefix.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AttemptWindow <= 0 {
		o.AttemptWindow = 15 * time.Minute
	}
	o.MaxAttemptsPerUser = max(o.MaxAttemptsPerUser, 1)
	o.MaxAttemptsPerClient = max(o.MaxAttemptsPerClient, 1)
	s := &server{Options: o, pages: parsePages()}
	if w, ok := o.Events.(watcher); ok {
		s.tail = newTail(w)
	}
	per := func(n int) float64 { return float64(n) / o.AttemptWindow.Seconds() }
	s.byUser = ratelimit.New[string](per(o.MaxAttemptsPerUser), float64(o.MaxAttemptsPerUser), maxBuckets, o.Now)
	s.byClient = ratelimit.New[netip.Addr](per(o.MaxAttemptsPerClient), float64(o.MaxAttemptsPerClient), maxBuckets, o.Now)

	mux := http.NewServeMux()
	mux.Handle("GET /console/static/", http.StripPrefix("/console/", http.FileServerFS(staticFS)))
	mux.HandleFunc("GET /console/{$}", s.home)
	mux.HandleFunc("GET /console/sign-in", s.signInPage)
	mux.HandleFunc("POST /console/sign-in", s.signIn)
	mux.HandleFunc("GET /console/sign-in/code", s.codePage)
	mux.HandleFunc("POST /console/sign-in/code", s.code)
	mux.HandleFunc("POST /console/sign-out", s.signedIn(s.signOut))
	mux.HandleFunc("GET /console/overview", s.signedIn(s.overview))
	mux.HandleFunc("GET /console/tenants", s.signedIn(s.tenants))
	mux.HandleFunc("POST /console/tenants", s.signedIn(s.createTenant))
	mux.HandleFunc("GET /console/tenants/{tenant}", s.signedIn(s.tenantRead(s.tenantPage)))
	mux.HandleFunc("POST /console/tenants/{tenant}", s.signedIn(s.tenantWrite(s.editTenant)))
	mux.HandleFunc("POST /console/tenants/{tenant}/lists", s.signedIn(s.tenantWrite(s.putList)))
	mux.HandleFunc("POST /console/tenants/{tenant}/credentials", s.signedIn(s.tenantWrite(s.createCredential)))
	mux.HandleFunc("POST /console/tenants/{tenant}/credentials/revoke", s.signedIn(s.tenantWrite(s.revokeCredential(false))))
	mux.HandleFunc("POST /console/tenants/{tenant}/api-keys", s.signedIn(s.scoped(access.Operator, s.createAPIKey)))
	mux.HandleFunc("POST /console/tenants/{tenant}/api-keys/revoke", s.signedIn(s.scoped(access.Operator, s.revokeCredential(true))))
	mux.HandleFunc("GET /console/tenants/{tenant}/suppressions", s.signedIn(s.tenantRead(s.suppressions)))
	mux.HandleFunc("POST /console/tenants/{tenant}/suppressions", s.signedIn(s.tenantWrite(s.addSuppression)))
	mux.HandleFunc("POST /console/tenants/{tenant}/suppressions/remove", s.signedIn(s.tenantWrite(s.removeSuppression)))
	mux.HandleFunc("GET /console/tenants/{tenant}/suppressions/import", s.signedIn(s.tenantWrite(s.importPage)))
	mux.HandleFunc("POST /console/tenants/{tenant}/suppressions/import", s.signedIn(s.tenantWrite(s.importSuppressions)))
	mux.HandleFunc("GET /console/tenants/{tenant}/suppressions/export", s.signedIn(s.tenantRead(s.exportSuppressions)))
	mux.HandleFunc("GET /console/tenants/{tenant}/messages", s.signedIn(s.tenantRead(s.messages)))
	mux.HandleFunc("GET /console/tenants/{tenant}/messages/{id}/captured/{index}", s.signedIn(s.tenantRead(s.capturedPage)))
	mux.HandleFunc("GET /console/tenants/{tenant}/audit", s.signedIn(s.tenantRead(s.auditTenant)))
	mux.HandleFunc("GET /console/tenants/{tenant}/events", s.signedIn(s.tenantRead(s.eventsPage)))
	mux.HandleFunc("GET /console/tenants/{tenant}/events/stream", s.signedIn(s.tenantRead(s.eventStream)))
	mux.HandleFunc("GET /console/audit", s.signedIn(s.auditAll))
	mux.HandleFunc("GET /console/tenants/{tenant}/domains", s.signedIn(s.tenantRead(s.domains)))
	mux.HandleFunc("POST /console/tenants/{tenant}/domains", s.signedIn(s.scoped(access.Operator, s.addDomain)))
	mux.HandleFunc("GET /console/tenants/{tenant}/domains/{domain}", s.signedIn(s.tenantRead(s.withDomain(s.domainPage))))
	mux.HandleFunc("GET /console/tenants/{tenant}/domains/{domain}/readiness", s.signedIn(s.tenantRead(s.withDomain(s.readinessPage))))
	mux.HandleFunc("POST /console/tenants/{tenant}/domains/{domain}/keys", s.signedIn(s.tenantWrite(s.withDomain(s.publishKey))))
	mux.HandleFunc("POST /console/tenants/{tenant}/domains/{domain}/keys/activate", s.signedIn(s.tenantWrite(s.withDomain(s.activateKey))))
	mux.HandleFunc("POST /console/tenants/{tenant}/domains/{domain}/keys/delete", s.signedIn(s.tenantWrite(s.withDomain(s.deleteKey))))
	mux.HandleFunc("GET /console/tenants/{tenant}/webhooks", s.signedIn(s.tenantRead(s.webhooksPage)))
	mux.HandleFunc("POST /console/tenants/{tenant}/webhooks", s.signedIn(s.tenantWrite(s.createWebhook)))
	mux.HandleFunc("GET /console/tenants/{tenant}/webhooks/{endpoint}", s.signedIn(s.tenantRead(s.withEndpoint(s.endpointPage))))
	mux.HandleFunc("POST /console/tenants/{tenant}/webhooks/{endpoint}/delete", s.signedIn(s.tenantWrite(s.withEndpoint(s.deleteWebhook))))
	mux.HandleFunc("POST /console/tenants/{tenant}/webhooks/{endpoint}/resend", s.signedIn(s.tenantWrite(s.withEndpoint(s.resendDelivery))))
	mux.HandleFunc("POST /console/tenants/{tenant}/webhooks/{endpoint}/replay", s.signedIn(s.tenantWrite(s.withEndpoint(s.replayWebhook))))
	mux.HandleFunc("GET /console/tenants/{tenant}/privacy", s.signedIn(s.tenantRead(s.privacyPage)))
	mux.HandleFunc("GET /console/tenants/{tenant}/privacy/export", s.signedIn(s.tenantRead(s.exportPrivacy)))
	mux.HandleFunc("POST /console/tenants/{tenant}/privacy/erase", s.signedIn(s.tenantRead(s.erasePrivacy)))
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	// Another site's form posting here is refused before any handler
	// runs (Sec-Fetch-Site and Origin); the CSRF token is checked too.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusForbidden, "This request came from another site and was refused.")
	}))
	return s.allowed(secure(cop.Handler(mux)))
}

// allowed answers only the clients of AllowNetworks, by the address the
// listener saw (a forwarded header is the client's to forge).
func (s *server) allowed(next http.Handler) http.Handler {
	if len(s.AllowNetworks) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		for _, p := range s.AllowNetworks {
			if ip.IsValid() && p.Contains(ip) {
				next.ServeHTTP(w, r)
				return
			}
		}
		s.Logger.Info("console: refused a client outside console.allow_networks", "remote", ip)
		secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.fail(w, r, http.StatusForbidden, "The console is not open to your network.")
		})).ServeHTTP(w, r)
	})
}

// csp is the Content-Security-Policy of every answer: nothing but this
// origin's stylesheet and script file (no inline script), no framing,
// forms only to here.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// secure sets the headers every answer carries.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// clientIP is the peer's address, unmapped.
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// client is the key of the per-client sign-in limit: an IPv6 /64 counts
// as one client, as for the SMTP listeners.
func client(r *http.Request) netip.Addr { return netlimit.ClientOfString(r.RemoteAddr) }
