package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// Enqueuer takes an accepted message whose body is in the spool; it
// returns once the message is durable.
type Enqueuer interface {
	Enqueue(ctx context.Context, msg *queue.Message) error
}

// SubmissionOptions configure the submission listeners.
type SubmissionOptions struct {
	Hostname string
	Tenants  *tenant.Registry
	Queue    Enqueuer
	Spool    *queue.Spool
	// Suppressions is checked for every recipient at accept time, so the
	// app hears of a suppressed recipient at once (message.suppressed);
	// nil skips the check (delivery checks again anyway).
	Suppressions suppression.Store
	// TLS is the server certificate configuration; nil disables STARTTLS.
	TLS *tls.Config

	MaxMessageBytes int64
	MaxRecipients   int
	MaxConnections  int
	MaxLineLength   int
	// ReadTimeout and WriteTimeout bound each read and write once the
	// client has authenticated or sends from an ip credential's network
	// (zero = 5 minutes).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// MaxConnectionsPerClient caps the connections of one client address
	// (an IPv6 client's /64); zero = 50, Postfix's
	// smtpd_client_connection_count_limit.
	MaxConnectionsPerClient int
	// FirstCommandTimeout bounds the wait for a client's first bytes
	// (zero = 30 s); ReadTimeoutBeforeAuth each read after that until the
	// client authenticates (zero = 60 s).
	FirstCommandTimeout   time.Duration
	ReadTimeoutBeforeAuth time.Duration
	// MaxSessionBeforeAuth bounds the time from connect until the client
	// authenticates, MaxCommandsBeforeAuth the command lines it may send
	// meanwhile; past either it gets 421 4.4.2 and is closed (zero = 2
	// minutes, 20).
	MaxSessionBeforeAuth  time.Duration
	MaxCommandsBeforeAuth int
	// MaxAuthFailures is how many refused AUTH attempts close a
	// connection (zero = 5).
	MaxAuthFailures int
	// MaxAuthFailuresPerClient and MaxAuthFailuresPerUsername are how many
	// failed AUTH attempts one client address (an IPv6 client's /64; an
	// IPv6 /48 four times as many), and one username from any address,
	// may make within AuthFailureWindow; beyond, AUTH is refused with 454
	// 4.7.0 without checking the password, except for a username from the
	// client it last authenticated from (zero = 5, 20 and 15 minutes; see
	// authLimiter).
	MaxAuthFailuresPerClient   int
	MaxAuthFailuresPerUsername int
	AuthFailureWindow          time.Duration
	// Paused, when set, says why tenant's mail of a list of that kind is
	// refused: the tenant is paused by the reputation guard (package
	// reputation); paused is false when it is not.
	Paused func(tenant string, marketing bool) (why string, paused bool)
	// MarketingSent, when set, hears of each marketing message queued,
	// with its From domain, after the 250 is decided: it must not block
	// (the readiness warning at the door starts its check elsewhere).
	MarketingSent func(tenant, domain string)

	// Unavailable, when set, reports that the node's database is known
	// to be down (package health): new connections then get 421 4.3.2
	// instead of a greeting (see refuseDown).
	Unavailable func() bool

	// Local reports whether a client may AUTH without TLS; nil means
	// loopback addresses only.
	Local func(netip.Addr) bool

	Now    func() time.Time
	Logger *slog.Logger
}

// Submission is the SMTP submission service. Lifecycle: NewSubmission, then
// Serve and/or ServeTLS on listeners (each blocks), then Shutdown.
type Submission struct {
	// active and total count sessions (metrics).
	active atomic.Int64
	total  atomic.Uint64

	o    SubmissionOptions
	log  *slog.Logger
	auth *authLimiter

	mu      sync.Mutex
	servers []*smtp.Server
}

// NewSubmission returns the service.
func NewSubmission(o SubmissionOptions) *Submission {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxAuthFailures <= 0 {
		o.MaxAuthFailures = 5
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 1000
	}
	if o.Local == nil {
		o.Local = netip.Addr.IsLoopback
	}
	setDefault(&o.ReadTimeout, 5*time.Minute)
	setDefault(&o.WriteTimeout, 5*time.Minute)
	setDefault(&o.MaxConnectionsPerClient, 50)
	setDefault(&o.FirstCommandTimeout, 30*time.Second)
	setDefault(&o.ReadTimeoutBeforeAuth, time.Minute)
	setDefault(&o.MaxSessionBeforeAuth, 2*time.Minute)
	setDefault(&o.MaxCommandsBeforeAuth, 20)
	setDefault(&o.MaxAuthFailuresPerClient, 5)
	setDefault(&o.MaxAuthFailuresPerUsername, 20)
	setDefault(&o.AuthFailureWindow, 15*time.Minute)
	auth := newAuthLimiter(o.MaxAuthFailuresPerClient, o.MaxAuthFailuresPerUsername, o.AuthFailureWindow, o.Now)
	return &Submission{o: o, log: o.Logger, auth: auth}
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// listener wraps l with the connection caps and the short timeouts of
// clients not yet authenticated.
func (s *Submission) listener(l net.Listener, implicitTLS bool) *listener {
	return &listener{
		Listener: l, max: s.o.MaxConnections, perClient: s.o.MaxConnectionsPerClient,
		plaintext: !implicitTLS, implicitTLS: implicitTLS, timeout: 10 * time.Second,
		firstCommand: s.o.FirstCommandTimeout, beforeTrust: s.o.ReadTimeoutBeforeAuth,
		maxTime: s.o.MaxSessionBeforeAuth, maxCommands: s.o.MaxCommandsBeforeAuth,
		unavailable: s.o.Unavailable,
	}
}

func (s *Submission) server(tlsCfg *tls.Config) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.o.Hostname
	srv.MaxMessageBytes = s.o.MaxMessageBytes
	srv.MaxRecipients = s.o.MaxRecipients
	if s.o.MaxLineLength > 0 {
		srv.MaxLineLength = s.o.MaxLineLength
	}
	srv.ReadTimeout = s.o.ReadTimeout
	srv.WriteTimeout = s.o.WriteTimeout
	srv.TLSConfig = tlsCfg
	// AUTH is offered in plaintext to every client and refused by the
	// session unless the client is on loopback (see Session.Auth): go-smtp
	// knows only all or nothing.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = slogLogger{s.log}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	return srv
}

// Serve answers SMTP on l, offering STARTTLS when a certificate is set.
func (s *Submission) Serve(l net.Listener) error {
	srv := s.server(s.o.TLS)
	return srv.Serve(s.listener(l, false))
}

// ServeTLS answers SMTP over implicit TLS on l (RFC 8314).
func (s *Submission) ServeTLS(l net.Listener) error {
	if s.o.TLS == nil {
		return errors.New("smtpd: implicit TLS needs a certificate")
	}
	srv := s.server(nil)
	return srv.Serve(tls.NewListener(s.listener(l, true), s.o.TLS))
}

// Shutdown stops accepting, lets sessions in progress finish until ctx
// ends, then closes them.
func (s *Submission) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			srv.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newSession starts a session after HELO/EHLO (and again after STARTTLS).
func (s *Submission) newSession(c *smtp.Conn) (smtp.Session, error) {
	if err := refuseDown(c, s.o.Unavailable); err != nil {
		return nil, err
	}
	sess := &session{s: s, c: c, log: s.log}
	sess.raw, sess.tls = connOf(c)
	if sess.raw != nil && sess.tls {
		sess.raw.stopWatching()
	}
	sess.addr = remoteAddr(c.Conn())
	sess.loopback = s.o.Local(sess.addr)
	cred, err := s.o.Tenants.CredentialForAddr(context.Background(), sess.addr)
	switch {
	case err == nil:
		sess.cred = &cred
		if sess.raw != nil {
			sess.raw.trust() // the network is registered: as good as AUTH
		}
	case !errors.Is(err, tenant.ErrNotFound):
		return nil, internalError(s.log, "looking up ip credentials", err)
	}
	s.active.Add(1)
	s.total.Add(1)
	return sess, nil
}

// Sessions returns the SMTP sessions open now and opened since the start.
func (s *Submission) Sessions() (active int64, total uint64) {
	return s.active.Load(), s.total.Load()
}

// slogLogger adapts go-smtp's Logger to slog.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Warn("smtp: " + fmt.Sprint(v...)) }
