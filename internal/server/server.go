// Package server wires Heed's parts into one running relay: it opens the
// database and spool, builds the registry, queue, transport and listeners,
// and stops them in order. cmd/heed only parses flags and calls it; tests
// and benchmarks start the same relay in-process.
package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/fsutil"
	"github.com/heedmail/heed/internal/health"
	"github.com/heedmail/heed/internal/metrics"
	"github.com/heedmail/heed/internal/netlimit"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/unread"
	"github.com/heedmail/heed/public"
	"github.com/heedmail/heed/smtpd"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// ErrLocked is in the error of OpenData (and Start) while another process,
// a serving relay, holds the data directory's database.
var ErrLocked = store.ErrLocked

// Relay is everything Serve starts, in the order it is stopped.
type Relay struct {
	cfg *config.Config
	log *slog.Logger
	// st is the storage backend; db is its bbolt database (nil on
	// PostgreSQL), to which the key files are bound.
	st      *storage
	db      *store.DB
	events  *events.Log // the event log in st
	spool   *queue.Spool
	tenants *tenant.Registry
	// suppressions is the suppression list, checked at accept and at
	// every delivery attempt.
	suppressions *suppression.Service
	optOut       *suppression.OptOut
	queue        *queue.Queue
	transport    *outbound.Transport
	submission   *smtpd.Submission
	inbound      *smtpd.Inbound
	// unread is reports/unread: the inbound listener keeps reports there,
	// the admin API lists them, the retention job purges them.
	unread *unread.Store
	// resolver answers the DNS questions of readiness reports and the
	// admin API's DNS checks (readiness.dns_server); checker makes
	// readiness reports (the admin API, the console, the door warning);
	// door warns of marketing mail from a domain that is not ready.
	resolver *net.Resolver
	checker  *readiness.Checker
	door     *doorWarner
	public   *http.Server
	admin    *http.Server
	errs     chan error
	// webhooks sends events to the tenants' endpoints; hooks manages them.
	webhooks *webhooks.Dispatcher
	hooks    *webhooks.Manager
	metrics  *metrics.Metrics
	// qs and hookStore are the queue's and the webhooks' stores.
	qs        *queue.Records
	hookStore *webhooks.Service
	// rep is the reputation rates and guard (reputation.go).
	rep          reputationParts
	stopHooks    context.CancelFunc
	hooksStopped chan struct{}
	// consoleUsers are the console's accounts and sessions.
	consoleUsers *consoleusers.Service
	// health probes the database (nil on bbolt); see health.go.
	health *health.Probe
	// ready is true between a complete start and the start of shutdown;
	// /readyz reports it so a load balancer stops sending first.
	ready    atomic.Bool
	stopOnce sync.Once

	submissionAddr, implicitTLSAddr, adminAddr, publicAddr, inboundAddr string

	// privacy answers privacy requests, for the API and the console.
	privacy *privacy.Service
}

// InboundAddr is the address the inbound SMTP listener is bound to.
func (r *Relay) InboundAddr() string { return r.inboundAddr }

// PublicAddr is the address the public (opt-out) listener is bound to.
func (r *Relay) PublicAddr() string { return r.publicAddr }

// SubmissionAddr is the address the submission listener is bound to.
func (r *Relay) SubmissionAddr() string { return r.submissionAddr }

// ImplicitTLSAddr is the implicit-TLS listener's address ("" if none).
func (r *Relay) ImplicitTLSAddr() string { return r.implicitTLSAddr }

// AdminAddr is the address the admin API listener is bound to.
func (r *Relay) AdminAddr() string { return r.adminAddr }

// AdminToken is the first operator token (generated in demo mode).
func (r *Relay) AdminToken() string { return r.cfg.Admin.Tokens[0] }

// Tenants is the relay's tenant registry, for tests and benchmarks that
// set up what the admin API cannot (a domain without keys).
func (r *Relay) Tenants() *tenant.Registry { return r.tenants }

// Err reports a listener that failed; the relay should then be shut down.
func (r *Relay) Err() <-chan error { return r.errs }

// KeepRates turns the counting of outcomes into the reputation rates off
// and on again (it is on from the start). It exists for the benchmark
// that prices the rates (bench/reputation_test.go); with it off the
// guard judges nothing new, so a relay that serves mail leaves it on.
func (r *Relay) KeepRates(on bool) { r.qs.PauseRates(!on) }

// Serve runs the relay until ctx ends, then shuts down in order: stop
// accepting, let sessions finish, stop the workers at a safe point, close
// the database. In demo mode it prints the demo credentials to stdout.
func Serve(ctx context.Context, cfg *config.Config, stdout io.Writer, log *slog.Logger) error {
	r, err := Start(cfg, log)
	if err != nil {
		return err
	}
	if cfg.Demo {
		if err := r.demo(stdout); err != nil {
			r.Shutdown()
			return err
		}
		if err := r.demoOperator(stdout); err != nil {
			r.Shutdown()
			return err
		}
	}
	log.Info("heed: serving", "submission", r.submissionAddr, "admin", r.adminAddr, "public", r.publicAddr, "inbound", r.inboundAddr, "delivery", cfg.Delivery.Mode)
	select {
	case <-ctx.Done():
		log.Info("heed: shutting down")
	case err = <-r.errs:
		log.Error("heed: a listener failed", "err", err)
	}
	r.Shutdown()
	return err
}

// Start opens the data directory and starts every listener and the
// delivery workers. The caller must call Shutdown.
func Start(cfg *config.Config, log *slog.Logger) (*Relay, error) {
	if err := dataDirExists(cfg); err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, log: log, errs: make(chan error, 4)}
	st, err := r.openStorage()
	if err != nil {
		return nil, err
	}
	r.st = st
	if err := r.build(); err != nil {
		st.close()
		return nil, err
	}
	if err := r.listen(); err != nil {
		r.Shutdown()
		return nil, err
	}
	return r, nil
}

// build makes every part of the relay, in the order they depend on each
// other; listen starts them.
func (r *Relay) build() error {
	r.buildStores()
	key := r.st.serverKey
	var err error
	if r.consoleUsers, err = consoleUsers(key, r.st.consoleUsers); err != nil {
		return err
	}
	tokens, err := r.buildLists(key)
	if err != nil {
		return err
	}
	if err := r.buildReputation(); err != nil {
		return err
	}
	r.buildInbound(key, tokens)
	if err := r.buildWebhooks(key); err != nil {
		return err
	}
	if err := r.keyEveryDomain(); err != nil {
		return err
	}
	r.buildQueue(key, tokens)
	if err := r.buildSubmission(); err != nil {
		return err
	}
	r.registerGauges()
	return nil
}

// buildStores takes the stores of the storage backend and the metrics
// read from them.
func (r *Relay) buildStores() {
	r.spool = r.st.spool
	r.qs = r.st.qs
	r.events = r.st.events
	r.health = r.newProbe()
	r.metrics = metrics.New(metrics.Options{Node: r.cfg.Node, DatabaseDown: r.health.Down})
	r.events.Watch(r.metrics.Event)
	r.metrics.SharedGauge("heed_queue_depth", "Recipients waiting for a delivery attempt, on every node (read from the database).", func() (float64, error) {
		n, err := r.qs.Depth()
		return float64(n), err
	})
}

// buildLists makes the outbound transport, the tenant registry, the
// suppression list with its opt-out links, and the unread reports'
// store; it returns the keys of unsubscribe tokens.
func (r *Relay) buildLists(key []byte) (*suppression.Keyring, error) {
	cfg := r.cfg
	var err error
	r.transport, err = outbound.New(outbound.Options{
		Mode: cfg.Delivery.Mode, Smarthost: cfg.Delivery.Smarthost,
		SmarthostUsername: cfg.Delivery.SmarthostUsername, SmarthostPassword: cfg.Delivery.SmarthostPassword,
		Routes: cfg.Delivery.Routes, Hostname: cfg.Hostname, ConnectTimeout: cfg.Delivery.ConnectTimeout,
		CaptureDir: filepath.Join(cfg.DataDir, "captured"), Logger: r.log,
	})
	if err != nil {
		return nil, err
	}
	r.tenants = tenant.NewRegistry(r.st.tenants)
	if err := r.tenants.SetSealKey(key); err != nil {
		return nil, err
	}
	tokens := r.st.tokens
	hashKey, err := suppressionHashKey(key)
	if err != nil {
		return nil, err
	}
	r.suppressions = r.st.suppressions(hashKey).WithSoftBounces(suppression.SoftRule{
		Limit: cfg.Bounces.SoftLimit, Span: cfg.Bounces.SoftSpan, Window: cfg.Bounces.SoftWindow,
	})
	r.optOut = &suppression.OptOut{Store: r.suppressions, Keys: tokens, Registry: r.tenants}
	in := cfg.SMTP.Inbound
	r.unread = unread.New(unread.Options{
		Dir:      filepath.Join(cfg.DataDir, "reports", "unread"),
		MaxFiles: in.UnreadReportsMaxFiles, MaxBytes: in.UnreadReportsMaxBytes,
		KeepBytes: in.UnreadReportKeepBytes, Retention: in.UnreadReportsRetention,
		Kept:   func(rep unread.Report) { r.metrics.UnreadReport(string(rep.Reason)) },
		Logger: r.log,
	})
	return tokens, nil
}

// buildInbound makes the inbound SMTP listener's server.
func (r *Relay) buildInbound(key []byte, tokens *suppression.Keyring) {
	cfg := r.cfg
	r.inbound = smtpd.NewInbound(smtpd.InboundOptions{
		Hostname: cfg.Hostname, MailtoDomain: cfg.Unsubscribe.MailtoDomain, Tokens: tokens,
		VERP:     queue.VERP{Domain: cfg.ReturnPathDomain, Key: key},
		Messages: r.qs, Suppressions: r.complaints(), Events: r.events,
		Unread:               r.unread,
		MaxMessagesPerMinute: cfg.SMTP.Inbound.MaxMessagesPerClientPerMinute,
		ReadTimeout:          cfg.SMTP.ReadTimeout, Logger: r.log,
		MaxConnections: cfg.SMTP.MaxConnections, MaxConnectionsPerClient: cfg.SMTP.Inbound.MaxConnectionsPerClient,
		FirstCommandTimeout: cfg.SMTP.FirstCommandTimeout, ReadTimeoutBeforeMail: cfg.SMTP.ReadTimeoutBeforeAuth,
		MaxSessionBeforeData: cfg.SMTP.MaxSessionBeforeAuth, MaxCommandsBeforeData: cfg.SMTP.MaxCommandsBeforeAuth,
		Unavailable: r.health.Down,
	})
	r.qs.SuppressHardBounces(r.suppressions)
}

// buildWebhooks makes the webhook dispatcher and the endpoints' manager.
func (r *Relay) buildWebhooks(key []byte) error {
	cfg := r.cfg
	sealer, err := webhooks.NewSealer(key)
	if err != nil {
		return err
	}
	r.hookStore = r.st.webhooks
	o := webhooks.Options{
		Store: r.hookStore, Events: r.events, Sealer: sealer,
		AllowPrivate: cfg.Webhooks.AllowPrivateTargets, Resolver: net.DefaultResolver,
		Concurrency: cfg.Webhooks.Concurrency, Timeout: cfg.Webhooks.Timeout,
		Logger: r.log,
	}
	if r.st.leases != nil {
		o.Owner = r.st.leases.Webhooks() // one node per endpoint (cluster.go)
	}
	r.webhooks = webhooks.NewDispatcher(o)
	if r.st.leases != nil {
		r.st.leases.OnLost(r.webhooks.Changed)
	}
	r.hooks = &webhooks.Manager{
		Store: r.hookStore, Events: r.events, Sealer: sealer,
		AllowPrivate: cfg.Webhooks.AllowPrivateTargets, Changed: r.webhooks.Changed,
	}
	return nil
}

// buildQueue makes the delivery queue.
func (r *Relay) buildQueue(key []byte, tokens *suppression.Keyring) {
	cfg := r.cfg
	r.queue = queue.New(queue.Options{
		Store: r.qs, Spool: r.spool, Transport: r.transport,
		Tenants: r.tenants, Suppressions: r.suppressions,
		Unsubscribe: queue.Unsubscribe{BaseURL: cfg.HTTP.Public.BaseURL, MailtoDomain: cfg.Unsubscribe.MailtoDomain, Tokens: tokens},
		VERP:        queue.VERP{Domain: cfg.ReturnPathDomain, Key: key},
		Hostname:    cfg.Hostname, Workers: cfg.Delivery.Workers, DomainConcurrency: cfg.Delivery.DomainConcurrency,
		MaxLifetime: cfg.Delivery.MaxQueueLifetime, Logger: r.log, Held: r.held,
		Observe: func(st queue.State, d time.Duration) {
			if st == queue.Delivered {
				r.metrics.Delivered(d)
			}
		},
	})
}

// buildSubmission makes the submission listener's server.
func (r *Relay) buildSubmission() error {
	cfg := r.cfg
	tlsCfg, err := smtpd.LoadCertificate(cfg.SMTP.Submission.TLSCert, cfg.SMTP.Submission.TLSKey, cfg.DataDir, cfg.Hostname)
	if err != nil {
		return err
	}
	r.resolver = readiness.NewResolver(cfg.Readiness.DNSServer)
	r.checker = r.readiness(r.resolver)
	r.door = &doorWarner{
		checker: r.checker, tenants: r, events: r.events, now: time.Now, log: r.log,
		warned: map[string]time.Time{}, checked: map[string]time.Time{}, inflight: map[string]bool{},
	}
	r.submission = smtpd.NewSubmission(smtpd.SubmissionOptions{
		Hostname: cfg.Hostname, Tenants: r.tenants, Queue: r.queue, Spool: r.spool, TLS: tlsCfg,
		Suppressions:    r.suppressions,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		MaxConnections: cfg.SMTP.MaxConnections, MaxLineLength: cfg.SMTP.MaxLineLength,
		ReadTimeout: cfg.SMTP.ReadTimeout, WriteTimeout: cfg.SMTP.WriteTimeout,
		MaxAuthFailures: cfg.SMTP.MaxAuthFailures, Logger: r.log,
		MaxConnectionsPerClient: cfg.SMTP.Submission.MaxConnectionsPerClient,
		FirstCommandTimeout:     cfg.SMTP.FirstCommandTimeout, ReadTimeoutBeforeAuth: cfg.SMTP.ReadTimeoutBeforeAuth,
		MaxSessionBeforeAuth: cfg.SMTP.MaxSessionBeforeAuth, MaxCommandsBeforeAuth: cfg.SMTP.MaxCommandsBeforeAuth,
		MaxAuthFailuresPerClient:   cfg.SMTP.MaxAuthFailuresPerClient,
		MaxAuthFailuresPerUsername: cfg.SMTP.MaxAuthFailuresPerUsername,
		AuthFailureWindow:          cfg.SMTP.AuthFailureWindow,
		Paused:                     r.rep.guard.Refusal,
		MarketingSent:              r.door.sent,
		Unavailable:                r.health.Down,
	})
	return nil
}

// registerGauges adds the metrics read from the parts when scraped.
func (r *Relay) registerGauges() {
	r.metrics.Gauge("heed_smtp_sessions", "SMTP submission sessions open now.", func() (float64, error) {
		n, _ := r.submission.Sessions()
		return float64(n), nil
	})
	r.metrics.Counter("heed_smtp_sessions_total", "SMTP submission sessions opened since the start.", func() (float64, error) {
		_, n := r.submission.Sessions()
		return float64(n), nil
	})
	r.metrics.SharedGauge("heed_webhook_backlog", "Events waiting to go to webhook endpoints, and deliveries scheduled again (read from the database).", func() (float64, error) {
		n, err := r.hooks.Backlog(context.Background())
		return float64(n), err
	})
	r.registerHealth()
}

// retentionEvery is how often the retention job runs (and once at start).
const retentionEvery = time.Hour

// retain deletes, at start and every hour until ctx ends, the events,
// finished messages' records and finished webhook deliveries older than
// retention.events, the console sessions that have expired, the unread
// reports older than
// smtp.inbound.unread_reports_retention, and the soft-bounce histories
// untouched for bounces.soft_window.
func (r *Relay) retain(ctx context.Context) {
	t := time.NewTicker(retentionEvery)
	defer t.Stop()
	for {
		if r.once(ctx, leaseRetention) {
			r.purge(ctx, time.Now().Add(-r.cfg.Retention.Events))
			r.purgeSoftBounces(ctx)
		}
		r.purgeUnread() // reports/unread is this node's directory
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purge runs one retention pass for cutoff.
func (r *Relay) purge(ctx context.Context, cutoff time.Time) {
	for _, p := range []struct {
		what string
		fn   func(context.Context, time.Time) (int, error)
	}{
		{"events", r.events.Purge},
		{"messages", r.qs.Purge},
		{"webhook deliveries", r.hookStore.Purge},
		{"reputation counters", func(ctx context.Context, _ time.Time) (int, error) { return r.rep.rates.Prune(ctx) }},
		// Console sessions end by their own clock (consoleusers.IdleTimeout,
		// MaxAge), not the retention period.
		{"console sessions", func(ctx context.Context, _ time.Time) (int, error) { return r.consoleUsers.PurgeSessions(ctx) }},
	} {
		n, err := p.fn(ctx, cutoff)
		if err != nil && ctx.Err() == nil {
			r.log.Error("heed: retention", "what", p.what, "err", err)
		}
		if n > 0 {
			r.log.Info("heed: retention deleted old records", "what", p.what, "count", n, "before", cutoff.UTC().Format(time.RFC3339))
		}
	}
}

// purgeUnread runs one retention pass over reports/unread, which has its
// own period (smtp.inbound.unread_reports_retention).
func (r *Relay) purgeUnread() {
	n, err := r.unread.Purge()
	if err != nil {
		r.log.Error("heed: retention", "what", "unread reports", "err", err)
	}
	if n > 0 {
		r.log.Info("heed: retention deleted old unread reports", "count", n,
			"retention", r.cfg.SMTP.Inbound.UnreadReportsRetention.String())
	}
}

// purgeSoftBounces runs one retention pass over the soft-bounce
// histories, which have their own period (bounces.soft_window).
func (r *Relay) purgeSoftBounces(ctx context.Context) {
	n, err := r.suppressions.PurgeSoftBounces(ctx, time.Now())
	if err != nil && ctx.Err() == nil {
		r.log.Error("heed: retention", "what", "soft bounce histories", "err", err)
	}
	if n > 0 {
		r.log.Info("heed: retention deleted old soft bounce histories", "count", n,
			"window", r.cfg.Bounces.SoftWindow.String())
	}
}

// keyEveryDomain gives DKIM keys to domains registered before Heed
// signed, so that every domain's mail is signed; the new records are
// logged for the operator to publish (GET of the domain shows them too).
func (r *Relay) keyEveryDomain() error {
	ctx := context.Background()
	ts, err := r.tenants.Tenants(ctx)
	if err != nil {
		return err
	}
	for _, t := range ts {
		ds, err := r.tenants.Domains(ctx, t.ID)
		if err != nil {
			return err
		}
		for _, d := range ds {
			made, err := r.tenants.EnsureKeys(ctx, d.Name)
			if err != nil {
				return fmt.Errorf("DKIM keys for %s: %w", d.Name, err)
			}
			for _, k := range made {
				r.log.Warn("heed: generated a DKIM key for a domain that had none; publish its record",
					"tenant", t.ID, "domain", d.Name, "name", k.Name(), "txt", k.TXT)
			}
		}
	}
	return nil
}

// listen starts what build made: the listeners, the delivery queue and
// the background jobs; then the relay is ready.
func (r *Relay) listen() error {
	if err := r.serveAdmin(); err != nil {
		return err
	}
	if err := r.servePublic(); err != nil {
		return err
	}
	if err := r.serveSMTP(); err != nil {
		return err
	}
	r.startBackground()
	r.ready.Store(true)
	return nil
}

// serveAdmin starts the admin API's listener.
func (r *Relay) serveAdmin() error {
	cfg := r.cfg
	tokens, err := r.operatorTokens()
	if err != nil {
		return err
	}
	var captures admin.Captures
	if cfg.Delivery.Mode == config.ModeCapture {
		captures = captureDir(filepath.Join(cfg.DataDir, "captured"))
	}
	audit := r.st.audit // written by the API, erased by privacy requests
	// One resolver, and one checker (and its slots), for the API, the
	// console and the warning at the door: build made them.
	resolver, rd := r.resolver, r.checker
	r.privacy = &privacy.Service{
		Suppressions: r.suppressions, Events: r.events,
		Queue: r.qs, Spool: r.spool,
		Others: []privacy.Eraser{r.hookStore, audit},
		Dirs:   []string{filepath.Join(cfg.DataDir, "captured"), filepath.Join(cfg.DataDir, "reports", "unread")},
		DB:     r.st.scrub,
	}
	handler := admin.New(admin.Options{
		Tenants: r.tenants, Events: r.events, Messages: r.qs,
		Captures: captures, Unread: r.unread, OperatorTokens: tokens, Hostname: cfg.Hostname, Logger: r.log,
		LookupTXT: resolver.LookupTXT, Readiness: rd, Suppressions: r.suppressions, Webhooks: r.hooks,
		Audit: audit, Metrics: r.metrics.Handler(), Backup: r.st.backup, BackupElsewhere: r.st.backupElsewhere,
		// A change and its audit record commit in one transaction.
		Changes: r.st.changes,
		Rates:   r.rep.rates, Guard: r.rep.guard,
		Privacy: r.privacy,
		Ready:   r.readyCheck,
		// health.Probe.Down is false on a nil probe (bbolt).
		Unavailable: r.health.Down,
	})
	handler, stopConsole := r.withConsole(handler, audit, resolver.LookupTXT, rd, captures)
	al, err := r.adminListener()
	if err != nil {
		return err
	}
	a := cfg.HTTP.Admin
	// ReadTimeout and WriteTimeout are left 0: they would bound a whole
	// CSV import or backup download; Deadlines bounds each read and write.
	r.admin = &http.Server{
		Handler:           netlimit.Deadlines(handler, a.ReadTimeout, a.WriteTimeout),
		ReadHeaderTimeout: a.ReadTimeout, IdleTimeout: a.IdleTimeout,
	}
	r.admin.RegisterOnShutdown(stopConsole)
	go r.serveHTTP(r.admin, al)
	return nil
}

// servePublic starts the public listener (unsubscribe pages).
func (r *Relay) servePublic() error {
	cfg := r.cfg
	pl, err := net.Listen("tcp", cfg.HTTP.Public.Listen)
	if err != nil {
		return fmt.Errorf("public HTTP listener: %w", err)
	}
	r.publicAddr = pl.Addr().String()
	pub := cfg.HTTP.Public
	pl = netlimit.New(pl, pub.MaxConnections, pub.MaxConnectionsPerClient, netlimit.RefuseHTTP(5*time.Second))
	r.public = &http.Server{
		Handler: public.New(public.Options{OptOut: r.optOut, Logger: r.log, BaseURL: cfg.HTTP.Public.BaseURL,
			Unavailable: r.health.Down}),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
	}
	go r.serveHTTP(r.public, pl)
	return nil
}

// serveSMTP starts the inbound and submission listeners.
func (r *Relay) serveSMTP() error {
	cfg := r.cfg
	il, err := net.Listen("tcp", cfg.SMTP.Inbound.Listen)
	if err != nil {
		return fmt.Errorf("inbound SMTP listener: %w", err)
	}
	r.inboundAddr = il.Addr().String()
	go func() { r.fail(r.inbound.Serve(il)) }()
	sl, err := net.Listen("tcp", cfg.SMTP.Submission.Listen)
	if err != nil {
		return fmt.Errorf("submission listener: %w", err)
	}
	r.submissionAddr = sl.Addr().String()
	go func() { r.fail(r.submission.Serve(sl)) }()
	if addr := cfg.SMTP.Submission.ImplicitTLSListen; addr != "" {
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("implicit TLS listener: %w", err)
		}
		r.implicitTLSAddr = tl.Addr().String()
		go func() { r.fail(r.submission.ServeTLS(tl)) }()
	}
	return nil
}

// startBackground starts delivery, webhook sending and retention.
func (r *Relay) startBackground() {
	r.startCluster()
	r.queue.Start()
	hctx, stop := context.WithCancel(context.Background())
	r.stopHooks, r.hooksStopped = stop, make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { r.webhooks.Run(hctx) })
	bg.Go(func() { r.retain(hctx) })
	bg.Go(func() { r.rep.guard.Run(hctx) })
	if r.health != nil {
		bg.Go(func() { r.health.Run(hctx) })
	}
	go func() {
		bg.Wait()
		close(r.hooksStopped)
	}()
}

// adminListener listens for the admin API, capped: tenants' API keys
// reach it, so one client must not hold every connection.
func (r *Relay) adminListener() (net.Listener, error) {
	a := r.cfg.HTTP.Admin
	l, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	r.adminAddr = l.Addr().String()
	return netlimit.New(l, a.MaxConnections, a.MaxConnectionsPerClient, netlimit.RefuseHTTP(5*time.Second)), nil
}

func (r *Relay) serveHTTP(s *http.Server, l net.Listener) {
	if err := s.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		r.fail(err)
	}
}

func (r *Relay) fail(err error) {
	if err != nil {
		select {
		case r.errs <- err:
		default:
		}
	}
}

// Shutdown stops what Start started, in order. It may be called more
// than once, also at once (a test's clean-up after a test that stopped
// the relay itself, a signal during a failed start): later calls wait for
// the first to finish and do nothing more.
func (r *Relay) Shutdown() { r.stopOnce.Do(r.shutdown) }

func (r *Relay) shutdown() {
	r.ready.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r.submission != nil {
		if err := r.submission.Shutdown(ctx); err != nil {
			r.log.Warn("heed: closing SMTP sessions", "err", err)
		}
	}
	if r.inbound != nil {
		if err := r.inbound.Shutdown(ctx); err != nil {
			r.log.Warn("heed: closing inbound SMTP sessions", "err", err)
		}
	}
	if r.public != nil {
		r.public.Shutdown(ctx)
	}
	if r.admin != nil {
		r.admin.Shutdown(ctx)
	}
	if r.queue != nil {
		if err := r.queue.Stop(ctx); err != nil {
			r.log.Warn("heed: stopping delivery", "err", err)
		}
	}
	if r.transport != nil {
		r.transport.Close()
	}
	if r.door != nil {
		r.door.wait() // a readiness report in the background records its event
	}
	if r.stopHooks != nil {
		// Requests in flight are cancelled; their events go out after the
		// next start, with the same webhook-id.
		r.stopHooks()
		<-r.hooksStopped
	}
	if err := r.st.close(); err != nil {
		r.log.Error("heed: closing the database", "err", err)
	}
}

// Key files are bound to the database (store.DB.BindSecret): a database
// whose key file is missing or was replaced does not start, because what
// was sealed or keyed under the old key would be lost without an error
// (DKIM keys that do not open, opted-out addresses that no longer match,
// links in mail already sent that no longer work).

// fingerprint identifies a secret without revealing it.
func fingerprint(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("heed secret fingerprint v1"))
	return m.Sum(nil)[:16]
}

// restoreError says which key file to put back.
func (r *Relay) restoreError(path, what string) error {
	return fmt.Errorf("%s %s: restore it from the backup of %s (a new key would silently break what the old one protected)", path, what, r.cfg.DataDir)
}

// boundSecret loads (or, for a database that holds nothing yet, creates)
// a key file with load and binds it.
func (r *Relay) boundSecret(name, path string, load func() ([]byte, error)) ([]byte, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		bound, err := r.db.BoundSecret(name)
		if err != nil {
			return nil, err
		}
		fresh, err := r.db.Fresh()
		if err != nil {
			return nil, err
		}
		if bound || !fresh {
			return nil, r.restoreError(path, "is missing, but this database was written with it")
		}
	}
	secret, err := load()
	if err != nil {
		return nil, err
	}
	err = r.db.BindSecret(name, fingerprint(secret))
	if errors.Is(err, store.ErrSecretMismatch) {
		return nil, r.restoreError(path, "is not the file this database was written with")
	}
	return secret, err
}

// tokenKeys loads the opt-out token keys and binds each: a known key id
// whose contents changed, or a directory left with no key once keys were
// recorded, stops the start. A retired id may be removed.
func (r *Relay) tokenKeys(dir string) (*suppression.Keyring, error) {
	const anyKey = "unsubscribe token keys"
	files, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	if len(files) == 0 {
		bound, err := r.db.BoundSecret(anyKey)
		if err != nil {
			return nil, err
		}
		if bound {
			return nil, r.restoreError(dir, "holds no token key, but this database has sent links made with them")
		}
	}
	keys, err := suppression.LoadKeyring(dir) // creates 1.key in an empty directory
	if err != nil {
		return nil, err
	}
	files, _ = filepath.Glob(filepath.Join(dir, "*.key"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		err = r.db.BindSecret("unsubscribe token key "+filepath.Base(f), fingerprint(b))
		if errors.Is(err, store.ErrSecretMismatch) {
			return nil, r.restoreError(f, "is not the token key of that id this database has used")
		}
		if err != nil {
			return nil, err
		}
	}
	return keys, r.db.BindSecret(anyKey, []byte{1})
}

// loadOrCreateKey returns the server key: it MACs VERP addresses, and
// keys derived from it hash the suppression list's addresses and seal DKIM
// private keys, so it must be backed up with the database. It is 32
// random bytes generated on first start.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := readOrCreate(path, func() []byte {
		k := make([]byte, 32)
		rand.Read(k)
		return k
	})
	if err == nil && len(key) < 32 {
		return nil, fmt.Errorf("%s: key shorter than 32 bytes", path)
	}
	return key, err
}

// readOrCreate returns the contents of a secret file, creating it (and its
// directory) from gen on first use.
func readOrCreate(path string, gen func() []byte) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return b, err
	}
	b = gen()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return b, fsutil.WriteFileSync(path, b)
}
