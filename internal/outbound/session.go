package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// conn is one SMTP session with a next hop, owned by one Deliver at a time.
type conn struct {
	c         *smtp.Client
	nc        net.Conn // what c reads and writes: TCP, or TLS over it
	raw       net.Conn // the TCP connection, closed at once to interrupt
	hop       hop
	ip        string
	tls       bool
	reused    bool      // taken from the idle cache
	idleSince time.Time // set when cached
	// pipelining: the server offers PIPELINING (RFC 2920), and transactions
	// are spoken by pipelined, reading replies through replies.
	pipelining bool
	replies    *replyReader
}

// has reports whether the server named ext in its EHLO reply.
func (cn *conn) has(ext string) bool {
	ok, _ := cn.c.Extension(ext)
	return ok
}

// close ends the session without waiting: QUIT is sent as a courtesy (RFC
// 5321 section 4.1.1.10) but its reply is not awaited, so closing never
// blocks a worker on a slow server.
func (cn *conn) close() {
	_ = cn.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(cn.nc, "QUIT\r\n")
	_ = cn.c.Close()
}

// tlsError marks a failed STARTTLS handshake, after which the host is tried
// again in plaintext.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS handshake failed: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// connect opens a session with one address of a hop, ready for MAIL FROM:
// greeted, EHLO said, TLS and AUTH done where they apply.
func (t *Transport) connect(ctx context.Context, h hop, ip net.IPAddr) (*conn, error) {
	useTLS := !t.isTLSBroken(h.key())
	cn, err := t.dialSession(ctx, h, ip, useTLS)
	var te *tlsError
	if err != nil && errors.As(err, &te) && ctx.Err() == nil {
		// Opportunistic TLS (RFC 3207 section 4): rather deliver in
		// plaintext than not at all, and stop asking this host for a while.
		t.markTLSBroken(h.key())
		t.log.Warn("STARTTLS failed, retrying in plaintext",
			slog.String("relay", h.addr()), slog.String("ip", ip.String()),
			slog.Duration("for", tlsBrokenFor), slog.Any("err", te.err))
		cn, err = t.dialSession(ctx, h, ip, false)
	}
	if err == nil {
		t.log.Debug("connected", slog.String("relay", h.addr()),
			slog.String("ip", ip.String()), slog.Bool("tls", cn.tls))
	}
	return cn, err
}

func (t *Transport) dialSession(ctx context.Context, h hop, ip net.IPAddr, tryTLS bool) (*conn, error) {
	d := net.Dialer{Timeout: t.o.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), h.port))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()

	cn := &conn{c: t.newClient(raw), nc: raw, raw: raw, hop: h, ip: ip.String()}
	if err := cn.c.Hello(t.o.Hostname); err != nil {
		_ = cn.c.Close()
		return nil, fmt.Errorf("%s: greeting/EHLO: %w", h.addr(), err)
	}
	if ok, _ := cn.c.Extension("STARTTLS"); ok && tryTLS {
		if err := t.startTLS(ctx, cn); err != nil {
			_ = cn.c.Close()
			return nil, err
		}
	}
	if h.auth && t.o.SmarthostUsername != "" {
		if err := t.authenticate(cn, ip); err != nil {
			_ = cn.c.Close()
			return nil, fmt.Errorf("%s: %w", h.addr(), err)
		}
	}
	cn.pipelining = cn.has("PIPELINING")
	return cn, nil
}

func (t *Transport) newClient(nc net.Conn) *smtp.Client {
	c := smtp.NewClient(nc)
	c.CommandTimeout = t.o.CommandTimeout
	c.SubmissionTimeout = 2 * t.o.CommandTimeout
	return c
}

// startTLS upgrades cn in place. go-smtp's client has no exported STARTTLS
// that keeps our EHLO name, so the command is spoken here and a fresh client
// takes over the TLS connection. A refused STARTTLS leaves cn in plaintext,
// as it was; a failed handshake returns a *tlsError.
func (t *Transport) startTLS(ctx context.Context, cn *conn) error {
	raw := cn.raw
	_ = raw.SetDeadline(time.Now().Add(t.o.CommandTimeout))
	defer func() { _ = raw.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(raw, "STARTTLS\r\n"); err != nil {
		return fmt.Errorf("%s: STARTTLS: %w", cn.hop.addr(), err)
	}
	// The server sends nothing after its reply until our ClientHello, so
	// this reader buffers no handshake bytes; anything a server injects
	// after the reply is dropped with it.
	if _, _, err := textproto.NewReader(bufio.NewReader(raw)).ReadResponse(220); err != nil {
		var pe *textproto.Error
		if errors.As(err, &pe) {
			t.log.Info("STARTTLS refused, continuing in plaintext",
				slog.String("relay", cn.hop.addr()), slog.Int("code", pe.Code))
			return nil
		}
		return fmt.Errorf("%s: STARTTLS: %w", cn.hop.addr(), err)
	}
	tc := tls.Client(raw, t.tlsConfig(cn.hop))
	if err := tc.HandshakeContext(ctx); err != nil {
		return &tlsError{err}
	}
	_ = raw.SetDeadline(time.Time{})
	// The new client expects a greeting; STARTTLS has none, so feed it one.
	gc := &greetedConn{Conn: tc, pending: []byte("220 " + cn.hop.name + " ESMTP (after STARTTLS)\r\n")}
	c := t.newClient(gc)
	// RFC 3207 section 4.2: forget what was learnt before TLS, EHLO again.
	if err := c.Hello(t.o.Hostname); err != nil {
		_ = c.Close()
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return fmt.Errorf("%s: EHLO after STARTTLS: %w", cn.hop.addr(), err)
		}
		// An I/O failure here is usually the server rejecting the handshake
		// after the client finished its half (TLS 1.3).
		return &tlsError{err}
	}
	cn.c, cn.nc, cn.tls = c, gc, true
	return nil
}

func (t *Transport) tlsConfig(h hop) *tls.Config {
	var cfg *tls.Config
	if t.o.TLSConfig != nil {
		cfg = t.o.TLSConfig.Clone()
	} else {
		// MTA-to-MTA TLS without DANE or MTA-STS cannot authenticate the
		// server (RFC 3207 section 4.1), so only encrypt.
		cfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = h.name
	}
	return cfg
}

// authenticate logs in to the smarthost with AUTH PLAIN (RFC 4954), which
// sends the password in the clear: only over TLS or to loopback.
func (t *Transport) authenticate(cn *conn, ip net.IPAddr) error {
	if !cn.tls && !ip.IP.IsLoopback() {
		return errors.New("credentials configured but the smarthost offers no TLS; not sending the password in the clear")
	}
	if !cn.c.SupportsAuth(sasl.Plain) {
		return errors.New("credentials configured but the smarthost does not offer AUTH PLAIN")
	}
	if err := cn.c.Auth(sasl.NewPlainClient("", t.o.SmarthostUsername, t.o.SmarthostPassword)); err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	return nil
}

// transact runs MAIL, RCPT and DATA on cn and returns the result. Afterwards
// cn is back in the idle cache or closed. stale reports that a cached
// connection turned out to be dead before the transaction began, in which
// case the caller should try a fresh one.
func (t *Transport) transact(ctx context.Context, cn *conn, env Envelope, msg []byte) (r Result, stale bool) {
	stop := context.AfterFunc(ctx, func() { _ = cn.raw.Close() })
	r, reusable, began := t.transaction(cn, env, msg)
	interrupted := !stop()
	switch {
	case interrupted:
		cn.close()
		return temporary("4.4.2", "delivery to %s interrupted: %v", cn.hop.addr(), context.Cause(ctx)), false
	case cn.reused && !began && !reusable:
		cn.close()
		return r, true
	case !reusable || !t.idle.put(cn):
		cn.close()
	}
	return r, false
}

// transaction is the SMTP exchange proper. reusable reports whether cn is
// in a known state, ready for the next message; began whether the server
// accepted MAIL FROM.
func (t *Transport) transaction(cn *conn, env Envelope, msg []byte) (r Result, reusable, began bool) {
	// A non-ASCII address needs SMTPUTF8 (RFC 6531); without it the
	// transaction is not begun (go-smtp would refuse it locally, as an
	// error that does not say why).
	utf8 := !isASCII(env.From) || !isASCII(env.To)
	if utf8 && !cn.has("SMTPUTF8") {
		return permanent(553, "5.6.7", "%s does not support SMTPUTF8, needed for a non-ASCII address (RFC 6531)", cn.hop.addr()), true, false
	}
	if cn.pipelining {
		return t.pipelined(cn, env, msg, utf8)
	}
	opts := &smtp.MailOptions{Size: int64(len(msg)), UTF8: utf8}
	if err := cn.c.Mail(env.From, opts); err != nil {
		// A refused MAIL opens no transaction: nothing to RSET.
		r, reusable = t.failure(cn, "MAIL FROM", err)
		return r, reusable, false
	}
	if err := cn.c.Rcpt(env.To, nil); err != nil {
		r, reusable = t.failure(cn, "RCPT TO", err)
		return r, reusable && t.reset(cn), true
	}
	w, err := cn.c.Data()
	if err != nil {
		r, reusable = t.failure(cn, "DATA", err)
		return r, reusable && t.reset(cn), true
	}
	// go-smtp sets no deadline while the body is written; a stalled server
	// must not hold the worker forever.
	_ = cn.nc.SetDeadline(time.Now().Add(cn.c.SubmissionTimeout))
	if _, err := w.Write(msg); err != nil {
		r, _ = t.failure(cn, "message data", err)
		return r, false, true
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		// After the final dot the transaction is over either way (RFC 5321
		// section 4.1.1.4): a rejection leaves a clean session.
		r, reusable = t.failure(cn, "end of data", err)
		return r, reusable, true
	}
	return fromSuccess(resp.StatusText, cn.hop.addr()), true, true
}

// failure classifies an error from the SMTP client. A reply from the server
// becomes the Result as it is and leaves the session usable, unless it is
// 421 (the server is closing, RFC 5321 section 3.8); anything else is an
// I/O failure, a temporary 4.4.2, and the session is lost.
func (t *Transport) failure(cn *conn, stage string, err error) (r Result, reusable bool) {
	host := cn.hop.addr()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return temporary("4.4.2", "connection to %s failed at %s: %v", host, stage, err), false
	}
	if se.Code < 400 || se.Code > 599 {
		return outOfStep(host, stage, se.Code, se.Message), false
	}
	r = fromReply(se, host)
	return r, se.Code != 421
}

// reset aborts an open transaction with RSET and reports whether the
// session is still usable.
func (t *Transport) reset(cn *conn) bool {
	return cn.c.Reset() == nil
}

// greetedConn replays a greeting before the connection's own bytes.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}
