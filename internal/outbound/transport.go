package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Delivery modes.
const (
	ModeMX        = "mx"
	ModeSmarthost = "smarthost"
	ModeCapture   = "capture"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultMXPort         = 25
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultMaxIdlePerHost = 32
	DefaultIdleTimeout    = 30 * time.Second
)

// tlsBrokenFor is how long a host whose TLS handshake failed is spoken to in
// plaintext without trying STARTTLS again.
const tlsBrokenFor = time.Hour

// maxDials bounds the connection attempts of one Deliver, as Postfix's
// smtp_mx_address_limit does: a domain with many unreachable MX addresses
// must not hold a worker for ConnectTimeout times their number.
const maxDials = 10

// Envelope identifies one recipient of one message.
type Envelope struct {
	MessageID string // the queue's id of the stored message
	Recipient int    // index of the recipient in the message's recipient list
	From      string // MAIL FROM, "" for the null sender
	To        string // RCPT TO
	Tenant    string
	List      string
}

// Resolver is the DNS the transport uses; *net.Resolver implements it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Options configures a Transport. Zero durations and sizes take the
// Default... values.
type Options struct {
	// Mode is ModeMX, ModeSmarthost or ModeCapture.
	Mode string
	// Smarthost is the host:port every message goes to in smarthost mode.
	Smarthost string
	// SmarthostUsername and SmarthostPassword, when set, authenticate to the
	// smarthost with AUTH PLAIN, which is only sent over TLS or to a loopback
	// address; without either, the smarthost counts as unreachable.
	SmarthostUsername, SmarthostPassword string
	// Routes maps a recipient domain to a host:port. A route takes
	// precedence in every mode, capture included.
	Routes map[string]string
	// Hostname is the name sent with EHLO; "" means os.Hostname.
	Hostname string
	// Resolver looks up MX and address records; nil means net.DefaultResolver.
	Resolver Resolver
	// MXPort is the port MX hosts are dialled on; 0 means 25.
	MXPort int
	// ConnectTimeout bounds one TCP connect.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each SMTP command; the reply after the message
	// data may take twice as long (RFC 5321 section 4.5.3.2.6).
	CommandTimeout time.Duration
	// TLSConfig is the base client TLS configuration; ServerName is set to
	// the next hop's name unless already set. nil means opportunistic TLS:
	// certificates are not verified, TLS 1.2 or later.
	TLSConfig *tls.Config
	// CaptureDir is where capture mode writes messages.
	CaptureDir string
	// MaxIdlePerHost bounds the idle connections kept per next hop.
	MaxIdlePerHost int
	// IdleTimeout is how long an idle connection is kept for reuse.
	IdleTimeout time.Duration
	// Logger receives the transport's log; nil discards it.
	Logger *slog.Logger
}

// Transport delivers messages. It is safe for concurrent use.
type Transport struct {
	o         Options
	routes    map[string]hop
	smarthost hop
	resolver  Resolver
	log       *slog.Logger
	idle      *idleCache

	mu        sync.Mutex
	tlsBroken map[string]time.Time // hop key → until when STARTTLS is skipped

	stop      chan struct{}
	janitor   sync.WaitGroup
	closeOnce sync.Once
}

// New checks o, applies defaults and starts the idle-connection janitor.
// Close stops it.
func New(o Options) (*Transport, error) {
	if err := applyDefaults(&o); err != nil {
		return nil, err
	}
	t := &Transport{
		o:         o,
		routes:    make(map[string]hop, len(o.Routes)),
		resolver:  o.Resolver,
		log:       o.Logger,
		idle:      newIdleCache(o.MaxIdlePerHost, o.IdleTimeout),
		tlsBroken: make(map[string]time.Time),
		stop:      make(chan struct{}),
	}
	for domain, addr := range o.Routes {
		h, err := parseHop(addr, false)
		if err != nil {
			return nil, fmt.Errorf("outbound: route for %q: %w", domain, err)
		}
		t.routes[normalizeDomain(domain)] = h
	}
	switch o.Mode {
	case ModeSmarthost:
		h, err := parseHop(o.Smarthost, true)
		if err != nil {
			return nil, fmt.Errorf("outbound: smarthost: %w", err)
		}
		t.smarthost = h
	case ModeCapture:
		if err := os.MkdirAll(o.CaptureDir, 0o750); err != nil {
			return nil, fmt.Errorf("outbound: capture directory: %w", err)
		}
	}
	t.janitor.Add(1)
	go t.sweep()
	return t, nil
}

func applyDefaults(o *Options) error {
	switch o.Mode {
	case ModeMX, ModeSmarthost:
	case ModeCapture:
		if o.CaptureDir == "" {
			return errors.New("outbound: capture mode needs a CaptureDir")
		}
	default:
		return fmt.Errorf("outbound: unknown mode %q (want mx, smarthost or capture)", o.Mode)
	}
	if o.Hostname == "" {
		name, err := os.Hostname()
		if err != nil || name == "" {
			name = "localhost"
		}
		o.Hostname = name
	}
	if strings.ContainsAny(o.Hostname, " \t\r\n") {
		return fmt.Errorf("outbound: invalid EHLO hostname %q", o.Hostname)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.MXPort, DefaultMXPort)
	setDefault(&o.MaxIdlePerHost, DefaultMaxIdlePerHost)
	setDefault(&o.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&o.CommandTimeout, DefaultCommandTimeout)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Deliver makes one delivery attempt of msg, already rendered and signed, to
// env.To, and reports the outcome. It does not retry beyond what is
// described in the package documentation; the queue decides what a 4xx
// means. A cancelled ctx aborts the attempt with a temporary result.
func (t *Transport) Deliver(ctx context.Context, env Envelope, msg []byte) Result {
	start := time.Now()
	r := t.deliver(ctx, env, msg)
	level, outcome := slog.LevelInfo, "delivered"
	switch {
	case r.Permanent():
		level, outcome = slog.LevelWarn, "bounced"
	case !r.Delivered():
		level, outcome = slog.LevelWarn, "deferred"
	}
	t.log.LogAttrs(ctx, level, outcome,
		slog.String("message_id", env.MessageID),
		slog.Int("recipient", env.Recipient),
		slog.String("tenant", env.Tenant),
		slog.String("rcpt_domain", domainOf(env.To)),
		slog.String("relay", r.Host),
		slog.String("reply", r.String()),
		slog.Int("size", len(msg)),
		slog.Duration("took", time.Since(start)))
	return r
}

func (t *Transport) deliver(ctx context.Context, env Envelope, msg []byte) Result {
	if strings.ContainsAny(env.From, "\r\n<>") {
		return permanent(501, "5.1.7", "invalid sender address")
	}
	domain := domainOf(env.To)
	if domain == "" || strings.ContainsAny(env.To, "\r\n<> ") {
		return permanent(501, "5.1.3", "invalid recipient address")
	}
	if h, ok := t.routes[domain]; ok {
		return t.send(ctx, []hop{h}, env, msg)
	}
	switch t.o.Mode {
	case ModeCapture:
		return t.capture(env, msg)
	case ModeSmarthost:
		return t.send(ctx, []hop{t.smarthost}, env, msg)
	}
	hops, fail := t.mxHops(ctx, domain)
	if hops == nil {
		return fail
	}
	return t.send(ctx, hops, env, msg)
}

// send tries the hops in order until one answers the transaction; see the
// package documentation for what counts as answering.
func (t *Transport) send(ctx context.Context, hops []hop, env Envelope, msg []byte) Result {
	var lastErr error
	dials := 0
	for _, h := range hops {
		if cn := t.idle.get(h.key()); cn != nil {
			if r, stale := t.transact(ctx, cn, env, msg); !stale {
				return r
			}
			t.log.Debug("cached connection went stale, reconnecting", slog.String("relay", h.addr()))
		}
		addrs, err := t.resolveHop(ctx, h)
		if err != nil {
			lastErr = err
			continue
		}
		for _, ip := range addrs {
			if dials == maxDials || ctx.Err() != nil {
				break
			}
			dials++
			cn, err := t.connect(ctx, h, ip)
			if err != nil {
				lastErr = err
				t.log.Debug("next hop failed", slog.String("relay", h.addr()),
					slog.String("ip", ip.String()), slog.Any("err", err))
				continue
			}
			r, _ := t.transact(ctx, cn, env, msg)
			return r
		}
	}
	if err := ctx.Err(); err != nil {
		return temporary("4.4.2", "delivery interrupted: %v", err)
	}
	if lastErr == nil {
		lastErr = errors.New("no next hop")
	}
	return temporary("4.4.1", "no next hop could be reached: %v", lastErr)
}

// Close closes the cached connections and stops the janitor. Deliveries in
// flight finish, and their connections are closed instead of cached.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.stop)
		t.janitor.Wait()
		for _, cn := range t.idle.closeAll() {
			cn.close()
		}
	})
	return nil
}

// sweep closes idle connections that outlived IdleTimeout, so a hop that
// receives no more mail does not hold its connections open.
func (t *Transport) sweep() {
	defer t.janitor.Done()
	tick := time.NewTicker(max(t.o.IdleTimeout/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			for _, cn := range t.idle.expired() {
				cn.close()
			}
		}
	}
}

func (t *Transport) isTLSBroken(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.tlsBroken[key]
	if ok && time.Now().After(until) {
		delete(t.tlsBroken, key)
		return false
	}
	return ok
}

func (t *Transport) markTLSBroken(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for k, until := range t.tlsBroken {
		if now.After(until) {
			delete(t.tlsBroken, k)
		}
	}
	t.tlsBroken[key] = now.Add(tlsBrokenFor)
}

// domainOf returns the lower-cased domain of an address, "" if it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return normalizeDomain(addr[i+1:])
}

func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
