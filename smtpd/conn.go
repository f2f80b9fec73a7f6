package smtpd

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/netlimit"
)

// conn wraps each accepted connection. It counts itself against the
// listener's connection caps, shortens the read deadlines of a client that
// has not yet sent anything or is not yet trusted, can close itself right
// after the next reply (too many failed AUTH attempts), and, while the
// session is in plaintext, watches the raw bytes for a CR or LF that is not
// part of a CRLF pair.
//
// The raw watch exists because go-smtp's DATA reader elides a dot and a CR
// at the start of a line (".<CR>X" becomes "X"), so a bare CR there never
// reaches Session.Data; below go-smtp every byte is still visible. Once TLS
// starts, the bytes here are ciphertext: the session turns the watch off
// and relies on its own check of the DATA stream (see data.go).
type conn struct {
	net.Conn
	release func()
	once    sync.Once

	watch      atomic.Bool
	bare       atomic.Int64 // bare CR or LF seen so far
	prevCR     bool         // only touched by the reading goroutine
	closeAfter atomic.Bool

	// A connection that costs the client nothing to hold open should not
	// be held long: until the client's first bytes its reads are bounded
	// by firstCommand, until trust (AUTH, an ip credential, or MAIL on the
	// inbound listener) by beforeTrust, and after that only by the
	// server's read timeout.
	firstCommand, beforeTrust time.Duration
	started, trusted          atomic.Bool
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.started.Store(true)
		if c.watch.Load() {
			c.scan(p[:n])
		}
	}
	return n, err
}

// trust lifts the short read deadlines: the client has shown who it is.
func (c *conn) trust() { c.trusted.Store(true) }

// SetReadDeadline is where go-smtp (and crypto/tls beneath it) sets the
// server's read timeout before each command line; an untrusted client gets
// the shorter of that and its stage's limit.
func (c *conn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.capDeadline(t))
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *conn) capDeadline(t time.Time) time.Time {
	if c.trusted.Load() {
		return t
	}
	d := c.beforeTrust
	if !c.started.Load() && c.firstCommand > 0 {
		d = c.firstCommand
	}
	if d <= 0 {
		return t
	}
	if limit := time.Now().Add(d); t.IsZero() || limit.Before(t) {
		return limit
	}
	return t
}

func (c *conn) scan(p []byte) {
	if bare := countBare(p, c.prevCR); bare > 0 {
		c.bare.Add(bare)
	}
	c.prevCR = p[len(p)-1] == '\r'
}

// countBare counts the CRs not followed by LF and the LFs not preceded by
// CR in p, which follows a CR when prevCR is set. A CR at the end of p is
// not counted: the byte after it decides. It counts with bytes.Count,
// which is vectorised, rather than byte by byte: every byte of every
// message goes through here.
func countBare(p []byte, prevCR bool) int64 {
	if len(p) == 0 {
		return 0
	}
	pairs := bytes.Count(p, crlf)
	bareLF := bytes.Count(p, lf) - pairs
	bareCR := bytes.Count(p, cr) - pairs
	if prevCR {
		if p[0] == '\n' {
			bareLF-- // the pair straddles the two reads
		} else {
			bareCR++ // the previous read's last CR
		}
	}
	if p[len(p)-1] == '\r' {
		bareCR-- // decided by the next read
	}
	return int64(bareLF + bareCR)
}

var (
	crlf = []byte("\r\n")
	cr   = []byte("\r")
	lf   = []byte("\n")
)

// bareCount is the number of bare CRs and LFs read so far.
func (c *conn) bareCount() int64 { return c.bare.Load() }

// stopWatching turns the raw watch off (TLS has started).
func (c *conn) stopWatching() {
	c.watch.Store(false)
	c.bare.Store(0)
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfter.Load() {
		c.Close()
	}
	return n, err
}

func (c *conn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// listener caps concurrent connections, in all and per client: one over
// either cap is told so with 421 and closed (RFC 5321 section 3.8)
// instead of waiting in the backlog. The per-client cap is what keeps one
// client that opens connections and sends nothing from taking every slot
// and refusing everyone else.
type listener struct {
	net.Listener
	max       int
	perClient int  // 0 = no per-client cap
	plaintext bool // raw watch on: the listener does not speak TLS itself
	timeout   time.Duration
	// firstCommand and beforeTrust bound each read of a client that has
	// sent nothing yet, and of one not yet trusted (see conn.trust); 0
	// leaves the server's read timeout alone.
	firstCommand, beforeTrust time.Duration

	active  atomic.Int64
	mu      sync.Mutex
	clients map[netip.Addr]int // open connections per netlimit.Client
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := netlimit.ClientOf(c.RemoteAddr())
		if !l.admitClient(key) {
			go refuse(c, l.timeout, "Too many connections from your address, close some and try again later")
			continue
		}
		if l.active.Add(1) > int64(l.max) {
			l.active.Add(-1)
			l.releaseClient(key)
			go refuse(c, l.timeout, "Too many connections, try again later")
			continue
		}
		wc := &conn{Conn: c, release: func() {
			l.active.Add(-1)
			l.releaseClient(key)
		}, firstCommand: l.firstCommand, beforeTrust: l.beforeTrust}
		wc.watch.Store(l.plaintext)
		return wc, nil
	}
}

// admitClient counts a connection against its client's cap, or reports
// that the client is at the cap.
func (l *listener) admitClient(key netip.Addr) bool {
	if l.perClient <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients == nil {
		l.clients = make(map[netip.Addr]int)
	}
	if l.clients[key] >= l.perClient {
		return false
	}
	l.clients[key]++
	return true
}

func (l *listener) releaseClient(key netip.Addr) {
	if l.perClient <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// The entry goes with the client's last connection, so the map holds
	// no more entries than there are open connections.
	if l.clients[key]--; l.clients[key] <= 0 {
		delete(l.clients, key)
	}
}

// trustAtMail lifts the short timeouts of a connection to a listener
// without AUTH once a MAIL command is accepted: the client has begun to
// deliver, and a report's DATA may need the full read timeout.
func trustAtMail(c *smtp.Conn, s smtp.Session) smtp.Session {
	raw := c.Conn()
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	wc, _ := raw.(*conn)
	return &mailTrust{Session: s, raw: wc}
}

type mailTrust struct {
	smtp.Session
	raw *conn
}

func (m *mailTrust) Mail(from string, opts *smtp.MailOptions) error {
	err := m.Session.Mail(from, opts)
	if err == nil && m.raw != nil {
		m.raw.trust()
	}
	return err
}

func refuse(c net.Conn, timeout time.Duration, why string) {
	c.SetWriteDeadline(time.Now().Add(timeout))
	c.Write([]byte("421 4.7.0 " + why + "\r\n"))
	c.Close()
}
