package smtpd

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/netlimit"
)

// conn wraps each accepted connection. It counts itself against the
// listener's connection caps, bounds a client that is not yet trusted (see
// phase), can close itself right after the next reply (too many failed
// AUTH attempts), and, while the session is in plaintext, watches the raw
// bytes for a CR or LF that is not part of a CRLF pair.
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

	phase
}

// phase bounds a client that costs nothing to keep connected and has not
// shown who it is: from connect until AUTH or an ip credential
// (submission), or until DATA (inbound, where a phase starts again after
// each message). Until its first bytes each read is bounded by
// firstCommand, after that by beforeTrust; the phase as a whole by
// maxTime, and it may send at most maxCommands command lines. Past
// any of them the read times out, and go-smtp answers 421 4.4.2 and
// closes. Bounding each read alone let a client that sent NOOP just
// inside beforeTrust hold its slot for ever. Once trusted, only the
// server's read timeout applies.
//
// go-smtp sets the read deadline before each command line and nowhere
// else (bar one before an implicit-TLS handshake), so each SetReadDeadline
// is a command line.
type phase struct {
	firstCommand, beforeTrust, maxTime time.Duration
	maxCommands                        int64

	started, trusted atomic.Bool
	// handshake: an implicit-TLS connection whose handshake reads are
	// not the client's first command (the clock of firstCommand starts
	// after it).
	handshake atomic.Bool
	begun     atomic.Int64 // the phase's start, Unix nanoseconds
	commands  atomic.Int64 // command lines read in the phase
	requested atomic.Int64 // the last read deadline go-smtp set, Unix nanoseconds (0: none)
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if !c.handshake.Load() {
			c.started.Store(true)
		}
		if c.watch.Load() {
			c.scan(p[:n])
		}
	}
	return n, err
}

// trust lifts the phase's bounds: the client has shown who it is (or, on
// the inbound listener, is sending a message). The read in progress (a
// message's DATA, read under the deadline set at its command line) gets
// the server's read timeout at once.
func (c *conn) trust() {
	c.trusted.Store(true)
	var t time.Time
	if ns := c.requested.Load(); ns != 0 {
		t = time.Unix(0, ns)
	}
	c.Conn.SetReadDeadline(t)
}

// untrust starts a new phase: the inbound listener's client has sent its
// message and must make progress again.
func (c *conn) untrust() {
	c.begun.Store(time.Now().UnixNano())
	c.commands.Store(0)
	c.trusted.Store(false)
}

// progress takes a command back off the phase's count: an accepted RCPT
// on the inbound listener, where a bounce may have many.
func (c *conn) progress() { c.commands.Add(-1) }

// SetReadDeadline is where go-smtp (and crypto/tls beneath it) sets the
// server's read timeout before each command line; an untrusted client gets
// the shorter of that and its phase's limits.
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
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.requested.Store(ns)
	if c.trusted.Load() {
		return t
	}
	now := time.Now()
	if c.handshake.Load() && c.commands.Load() > 0 {
		c.handshake.Store(false) // the handshake is over: this is the first command
		c.commands.Store(0)
	}
	if n := c.commands.Add(1); c.maxCommands > 0 && n > c.maxCommands {
		return now // times out at once
	}
	d := c.beforeTrust
	if !c.started.Load() && c.firstCommand > 0 {
		d = c.firstCommand
	}
	limit := t
	if d > 0 {
		limit = earlier(limit, now.Add(d))
	}
	if c.maxTime > 0 {
		limit = earlier(limit, time.Unix(0, c.begun.Load()).Add(c.maxTime))
	}
	return limit
}

// earlier is the earlier of two deadlines, the zero time being none.
func earlier(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
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
	// implicitTLS: the server does a TLS handshake first (see
	// phase.handshake).
	implicitTLS bool
	timeout     time.Duration
	// The bounds of a client not yet trusted (see phase); 0 leaves each
	// alone.
	firstCommand, beforeTrust, maxTime time.Duration
	maxCommands                        int
	// unavailable reports the database down (nil: never); a plaintext
	// listener then answers 421 4.3.2 in place of the greeting.
	unavailable func() bool

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
		if l.unavailable != nil && !l.implicitTLS && l.unavailable() {
			go refuseWith(c, l.timeout, downReply)
			continue
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
		}, phase: phase{
			firstCommand: l.firstCommand, beforeTrust: l.beforeTrust,
			maxTime: l.maxTime, maxCommands: int64(l.maxCommands),
		}}
		wc.begun.Store(time.Now().UnixNano())
		wc.handshake.Store(l.implicitTLS)
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

// trustInData lifts the bounds of a connection to a listener without
// AUTH while it sends a message, and starts a new phase after it: a
// sender that has begun to deliver may need the full read timeout for a
// report's DATA, but one that only talks (MAIL FROM:<> then NOOPs, say)
// must make progress like any stranger.
func trustInData(c *smtp.Conn, s smtp.Session) smtp.Session {
	wc, _ := connOf(c)
	return &dataTrust{Session: s, raw: wc}
}

// connOf is the conn the listener wrapped beneath a session's connection
// (nil when there is none, as on a test's pipe), and whether the session
// runs inside TLS.
func connOf(c *smtp.Conn) (wc *conn, inTLS bool) {
	raw := c.Conn()
	if tc, ok := raw.(*tls.Conn); ok {
		raw, inTLS = tc.NetConn(), true
	}
	wc, _ = raw.(*conn)
	return wc, inTLS
}

type dataTrust struct {
	smtp.Session
	raw *conn
}

func (d *dataTrust) Rcpt(to string, opts *smtp.RcptOptions) error {
	err := d.Session.Rcpt(to, opts)
	if err == nil && d.raw != nil {
		d.raw.progress()
	}
	return err
}

func (d *dataTrust) Data(r io.Reader) error {
	if d.raw != nil {
		d.raw.trust()
		defer d.raw.untrust()
	}
	return d.Session.Data(r)
}

func refuse(c net.Conn, timeout time.Duration, why string) {
	refuseWith(c, timeout, "421 4.7.0 "+why)
}

func refuseWith(c net.Conn, timeout time.Duration, line string) {
	c.SetWriteDeadline(time.Now().Add(timeout))
	c.Write([]byte(line + "\r\n"))
	c.Close()
}

// remoteAddr is the IP address of a connection's peer, as both
// listeners' sessions record it; the zero Addr when it has none (a
// test's pipe), which then shares one bucket.
func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
