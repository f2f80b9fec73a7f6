// Package testsink is a real SMTP server on loopback that records what it
// receives, for tests.
//
// It is go-smtp's Server listening on 127.0.0.1:0, so the code under test
// speaks real SMTP over a real socket (RFC 5321, STARTTLS per RFC 3207, AUTH
// PLAIN per RFC 4954). Tests script replies per stage with Options.Reply and
// wait for messages with Sink.Wait, which blocks on a notification rather
// than polling.
package testsink

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Stages passed to Options.Reply.
const (
	StageMail = "MAIL"
	StageRcpt = "RCPT"
	StageData = "DATA"
)

// Options configures a Sink.
type Options struct {
	// TLS, when set, makes the sink offer STARTTLS with this configuration.
	TLS *tls.Config
	// Users, when set, makes the sink offer AUTH PLAIN (allowed without TLS,
	// since the sink only listens on loopback) and require it before MAIL.
	Users map[string]string
	// Reply decides the answer to a stage ("MAIL", "RCPT", "DATA") of an
	// envelope; a nil error accepts. At MAIL rcpt is "". attempt is 1-based
	// and counts the calls of that stage for that address so far (the sender
	// for MAIL, the recipient for RCPT and DATA), so "451 then 250" is
	// `if attempt == 1 { return 451 }`. DATA asks once per recipient; the
	// first error answers.
	Reply func(stage, from, rcpt string, attempt int) *smtp.SMTPError
	// Discard reads each message's data and keeps only its envelope
	// (Message.Data is nil), as Postfix's smtp-sink does: for benchmarks,
	// where holding every body would add allocation and copying that a
	// remote server would not do on the relay's CPU.
	Discard bool
}

// Message is one message the sink accepted.
type Message struct {
	From     string
	To       []string
	Data     []byte // as received, dot-unstuffed, CRLF line endings kept (nil with Options.Discard)
	TLS      bool   // the transaction ran over STARTTLS
	AuthUser string // the user that authenticated, "" if none
	Conn     int    // serial of the connection it arrived on, from 1
}

// Sink is a running SMTP server. Its methods are safe for concurrent use.
type Sink struct {
	opts   Options
	server *smtp.Server
	ln     net.Listener

	mu       sync.Mutex
	msgs     []Message
	conns    int
	attempts map[string]int // stage + "\x00" + address → calls so far
	changed  chan struct{}  // closed and replaced whenever msgs grows
}

// Start starts a sink on 127.0.0.1:0. It stops itself when the test ends.
func Start(t testing.TB, opts Options) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testsink: listen: %v", err)
	}
	s := &Sink{
		opts:     opts,
		attempts: make(map[string]int),
		changed:  make(chan struct{}),
	}
	s.ln = &countingListener{Listener: ln, sink: s}

	logw := &testLogWriter{t: t}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "sink.test"
	srv.TLSConfig = opts.TLS
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = log.New(logw, "testsink: ", 0)
	s.server = srv

	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(s.ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		// Close only closes the listeners Serve has registered; if Serve
		// has not got that far yet, closing ours is what makes it return.
		_ = s.ln.Close()
		<-served
		logw.stop()
	})
	return s
}

// Addr returns the host:port the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Port returns the port the sink listens on.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Messages returns a copy of the messages accepted so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyLocked()
}

// Connections returns the number of connections accepted so far.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Wait blocks until at least n messages were accepted and returns them; it
// fails the test if that does not happen within timeout.
func (s *Sink) Wait(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := s.copyLocked()
			s.mu.Unlock()
			return msgs
		}
		changed, got := s.changed, len(s.msgs)
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("testsink: waited %v for %d messages, got %d", timeout, n, got)
			return nil
		}
	}
}

func (s *Sink) copyLocked() []Message {
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		m.To = append([]string(nil), m.To...)
		m.Data = append([]byte(nil), m.Data...)
		out[i] = m
	}
	return out
}

func (s *Sink) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

// reply asks Options.Reply about one stage, counting the attempt.
func (s *Sink) reply(stage, from, rcpt string) error {
	if s.opts.Reply == nil {
		return nil
	}
	addr := rcpt
	if stage == StageMail {
		addr = from
	}
	s.mu.Lock()
	key := stage + "\x00" + addr
	s.attempts[key]++
	attempt := s.attempts[key]
	s.mu.Unlock()
	if e := s.opts.Reply(stage, from, rcpt, attempt); e != nil {
		return e
	}
	return nil
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	_, isTLS := c.TLSConnectionState()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	serial := 0
	if cc, ok := nc.(*countedConn); ok {
		serial = cc.serial
	}
	return &session{sink: s, conn: serial, tls: isTLS}, nil
}

// session is one SMTP session; go-smtp starts a new one after STARTTLS.
type session struct {
	sink     *Sink
	conn     int
	tls      bool
	authUser string
	from     string
	to       []string
}

var errAuthRequired = &smtp.SMTPError{
	Code:         530,
	EnhancedCode: smtp.EnhancedCode{5, 7, 0},
	Message:      "Authentication required",
}

func (s *session) AuthMechanisms() []string {
	if s.sink.opts.Users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.sink.opts.Users == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		want, ok := s.sink.opts.Users[username]
		if !ok || want != password || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		s.authUser = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.sink.opts.Users != nil && s.authUser == "" {
		return errAuthRequired
	}
	if err := s.sink.reply(StageMail, from, ""); err != nil {
		return err
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.sink.reply(StageRcpt, s.from, to); err != nil {
		return err
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	var data []byte
	var err error
	if s.sink.opts.Discard {
		_, err = io.Copy(io.Discard, r)
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return err
	}
	for _, rcpt := range s.to {
		if err := s.sink.reply(StageData, s.from, rcpt); err != nil {
			return err
		}
	}
	s.sink.record(Message{
		From:     s.from,
		To:       append([]string(nil), s.to...),
		Data:     data,
		TLS:      s.tls,
		AuthUser: s.authUser,
		Conn:     s.conn,
	})
	return nil
}

func (s *session) Reset() {
	s.from = ""
	s.to = nil
}

func (s *session) Logout() error { return nil }

// countingListener numbers the connections it accepts.
type countingListener struct {
	net.Listener
	sink *Sink
}

type countedConn struct {
	net.Conn
	serial int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.sink.mu.Lock()
	l.sink.conns++
	serial := l.sink.conns
	l.sink.mu.Unlock()
	return &countedConn{Conn: c, serial: serial}, nil
}

// testLogWriter sends the server's error log to t.Log until the sink stops,
// after which t.Log would panic.
type testLogWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(string(p))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// SMTPError builds a reply for Options.Reply, e.g. SMTPError(550, "5.1.1",
// "no such user"). An empty or malformed enhanced code leaves it unset, and
// go-smtp then sends X.0.0.
func SMTPError(code int, enhanced, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: text}
	var a, b, c int
	if _, err := fmt.Sscanf(enhanced, "%d.%d.%d", &a, &b, &c); err == nil {
		e.EnhancedCode = smtp.EnhancedCode{a, b, c}
	}
	return e
}
