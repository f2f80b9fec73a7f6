package smtpd

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn wraps each accepted connection. It counts itself against the
// listener's connection cap, can close itself right after the next reply
// (too many failed AUTH attempts), and, while the session is in plaintext,
// watches the raw bytes for a CR or LF that is not part of a CRLF pair.
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
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.watch.Load() {
		c.scan(p[:n])
	}
	return n, err
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

// listener caps concurrent connections: one over the cap is told so with
// 421 and closed (RFC 5321 section 3.8) instead of waiting in the backlog.
type listener struct {
	net.Listener
	max       int
	active    atomic.Int64
	plaintext bool // raw watch on: the listener does not speak TLS itself
	timeout   time.Duration
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > int64(l.max) {
			l.active.Add(-1)
			go refuse(c, l.timeout)
			continue
		}
		wc := &conn{Conn: c, release: func() { l.active.Add(-1) }}
		wc.watch.Store(l.plaintext)
		return wc, nil
	}
}

func refuse(c net.Conn, timeout time.Duration) {
	c.SetWriteDeadline(time.Now().Add(timeout))
	c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
	c.Close()
}
