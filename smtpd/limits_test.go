package smtpd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// dialFrom connects to addr from the loopback address local (Linux routes
// all of 127.0.0.0/8 to lo, so 127.0.0.2 is another client) and returns
// the connection with a reader, the server's first line already read.
func dialFrom(t *testing.T, local, addr string) (*rawConn, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound on the test, not a synchronisation: every wait below ends
	// on a reply or a close long before it.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawConn{t: t, c: c, r: bufio.NewReader(c)}
	return rc, rc.reply()
}

// clientFrom is a go-smtp client connected from local.
func clientFrom(t *testing.T, local, addr string) *smtp.Client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(nc)
	t.Cleanup(func() { c.Close() })
	return c
}

// closed reports whether the server has closed rc: it reads what is left
// (a last reply, perhaps) until EOF, and returns it.
func (rc *rawConn) closed() (string, bool) {
	rest, err := io.ReadAll(rc.r)
	return string(rest), err == nil
}

// TestOneClientCannotTakeEverySlot: a client that opens more idle
// connections than the listener holds gets at most the per-client cap of
// them, the rest 421 4.7.0 at connect; another client address can still
// connect and send mail while they are held.
func TestOneClientCannotTakeEverySlot(t *testing.T) {
	const perClient, total = 5, 20
	h := newHarness(t, func(o *SubmissionOptions) {
		o.MaxConnections, o.MaxConnectionsPerClient = total, perClient
	})
	held, perAddress := 0, 0
	for range 2 * total {
		rc, greeting := dialFrom(t, "127.0.0.1", h.addr)
		switch {
		case strings.HasPrefix(greeting, "220 "):
			held++
		case strings.HasPrefix(greeting, "421 4.7.0 "):
			if strings.Contains(greeting, "from your address") {
				perAddress++
			}
			if rest, ok := rc.closed(); !ok || rest != "" {
				t.Fatalf("refused connection not closed cleanly after %q (then %q)", greeting, rest)
			}
		default:
			t.Fatalf("got %q, want 220 or 421 4.7.0", greeting)
		}
	}
	if held > perClient {
		t.Fatalf("one client address holds %d connections, more than the cap of %d", held, perClient)
	}
	if held != perClient || perAddress != 2*total-perClient {
		t.Errorf("one client address holds %d connections and got %d refusals naming its address, want %d and %d",
			held, perAddress, perClient, 2*total-perClient)
	}

	// Another address, while the first one's connections are held.
	c := clientFrom(t, "127.0.0.2", h.addr)
	if err := c.Hello("app.test"); err != nil {
		t.Fatalf("another client, while the first held its connections: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "hello@acme.test", []string{"pat@example.net"}, goodMsg); err != nil {
		t.Fatal(err)
	}
	h.sink.Wait(t, 1, 10*time.Second)
}

// TestSilentClientClosed: connections that never send a command are
// closed after the first-command timeout, however long the other
// timeouts, and their slots are free again.
func TestSilentClientClosed(t *testing.T) {
	const perClient = 2
	h := newHarness(t, func(o *SubmissionOptions) {
		o.MaxConnectionsPerClient = perClient
		o.FirstCommandTimeout = 100 * time.Millisecond
		o.ReadTimeoutBeforeAuth, o.ReadTimeout = time.Hour, time.Hour
	})
	var silent []*rawConn
	for range perClient {
		rc, greeting := dialFrom(t, "127.0.0.1", h.addr)
		if !strings.HasPrefix(greeting, "220 ") {
			t.Fatalf("got %q", greeting)
		}
		silent = append(silent, rc)
	}
	for _, rc := range silent {
		rest, ok := rc.closed()
		if !ok {
			t.Fatal("a silent connection was not closed")
		}
		if !strings.HasPrefix(rest, "421 4.4.2 ") {
			t.Errorf("silent connection closed with %q, want 421 4.4.2", rest)
		}
	}
	// The server gives the slot back before it closes the socket, so
	// once the client has seen the close the slot is free.
	if _, greeting := dialFrom(t, "127.0.0.1", h.addr); !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("after the silent connections closed, a new one got %q", greeting)
	}
}

// TestUnauthenticatedIdleClosed: before AUTH a client gets the short read
// timeout after each command; once authenticated, the full one.
func TestUnauthenticatedIdleClosed(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) {
		o.ReadTimeoutBeforeAuth = 500 * time.Millisecond
		o.ReadTimeout = time.Hour
	})
	authed := h.login() // its last command was before the other's EHLO
	rc, _ := dialFrom(t, "127.0.0.1", h.addr)
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	rest, ok := rc.closed()
	if !ok || !strings.HasPrefix(rest, "421 4.4.2 ") {
		t.Fatalf("unauthenticated idle connection: closed %v with %q, want 421 4.4.2", ok, rest)
	}
	// The authenticated connection has been idle longer than that.
	if err := authed.Noop(); err != nil {
		t.Fatalf("authenticated connection after an idle spell: %v", err)
	}
}

// TestInboundPerClientAndIdle: the inbound listener caps one client's
// connections (default 10) and closes one idle before it sends a message,
// but gives a client in the middle of a message's DATA the full read
// timeout.
func TestInboundPerClientAndIdle(t *testing.T) {
	env := startInbound(t, func(o *InboundOptions) {
		o.ReadTimeout, o.ReadTimeoutBeforeMail = time.Hour, 200*time.Millisecond
	})
	addr := env.addr

	sending, _ := dialFrom(t, "127.0.0.1", addr)
	sending.write("EHLO mx.example.net\r\nMAIL FROM:<>\r\nRCPT TO:<fbl@bounces.relay.test>\r\nDATA\r\n")
	for _, want := range []string{"250", "250", "250", "354"} {
		sending.expect(want)
	}
	sending.write("From: fbl@isp.example\r\nSubject: report\r\n\r\nthe first half,\r\n")
	idle, _ := dialFrom(t, "127.0.0.1", addr)
	idle.write("EHLO mx.example.net\r\n")
	idle.expect("250")

	if rest, ok := idle.closed(); !ok || !strings.HasPrefix(rest, "421 4.4.2 ") {
		t.Fatalf("idle connection before a message: closed %v with %q, want 421 4.4.2", ok, rest)
	}
	// The sender has been slower than that in its DATA.
	sending.write("then the rest.\r\n.\r\n")
	sending.expect("250")

	// Silent connections wait for the first-command timeout (30 s), far
	// longer than this loop.
	held := 1
	for range 20 {
		_, greeting := dialFrom(t, "127.0.0.1", addr)
		if strings.HasPrefix(greeting, "220 ") {
			held++
		} else if !strings.HasPrefix(greeting, "421 4.7.0 ") {
			t.Fatalf("got %q, want 220 or 421 4.7.0", greeting)
		}
	}
	if held > 10 {
		t.Errorf("one client address holds %d inbound connections, more than the default cap of 10", held)
	}
}

// noopUntilClosed sends NOOP after NOOP, each after the last reply, until
// the server answers something else; it returns how many got 250 and the
// last reply, after checking that the server closed the connection.
func noopUntilClosed(t *testing.T, rc *rawConn) (int, string) {
	t.Helper()
	for n := 0; ; n++ {
		rc.write("NOOP\r\n")
		line, err := rc.r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d NOOPs: %v (got %q), want a reply", n, err, line)
		}
		if strings.HasPrefix(line, "250 ") {
			continue
		}
		// A NOOP the server had not read when it closed may make its
		// kernel answer with a reset rather than an end of stream: either
		// is a close; only the test's own deadline is not.
		rest, err := io.ReadAll(rc.r)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || len(rest) > 0 {
			t.Fatalf("after %q the connection was not closed (then %q, %v)", line, rest, err)
		}
		return n, strings.TrimRight(line, "\r\n")
	}
}

// TestTalkerBeforeAuthClosed: a client that never authenticates but keeps
// its connection busy with NOOPs, well inside the read timeout before
// AUTH, is closed once max_session_before_auth has passed since it
// connected; a client that authenticated is not.
func TestTalkerBeforeAuthClosed(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) {
		o.ReadTimeout, o.ReadTimeoutBeforeAuth = time.Hour, time.Hour
		o.MaxSessionBeforeAuth, o.MaxCommandsBeforeAuth = 500*time.Millisecond, 1<<30
	})
	authed := h.login()
	rc, _ := dialFrom(t, "127.0.0.1", h.addr)
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	if _, last := noopUntilClosed(t, rc); !strings.HasPrefix(last, "421 4.4.2 ") {
		t.Fatalf("a client talking without AUTH got %q, want 421 4.4.2", last)
	}
	// Connected before the other, and as long.
	if err := authed.Noop(); err != nil {
		t.Fatalf("authenticated connection: %v", err)
	}
}

// TestCommandsBeforeAuthBounded: a client may send max_commands_before_auth
// command lines before it authenticates, then gets 421 4.4.2 and is
// closed; after AUTH there is no such count.
func TestCommandsBeforeAuthBounded(t *testing.T) {
	const limit = 20
	h := newHarness(t, func(o *SubmissionOptions) {
		o.ReadTimeout, o.ReadTimeoutBeforeAuth, o.MaxSessionBeforeAuth = time.Hour, time.Hour, time.Hour
		o.MaxCommandsBeforeAuth = limit
	})
	rc, _ := dialFrom(t, "127.0.0.1", h.addr)
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	n, last := noopUntilClosed(t, rc)
	if n+1 != limit || !strings.HasPrefix(last, "421 4.4.2 ") {
		t.Fatalf("EHLO and %d NOOPs answered, then %q; want %d commands, then 421 4.4.2", n, last, limit)
	}
	c := h.login()
	for i := range 2 * limit {
		if err := c.Noop(); err != nil {
			t.Fatalf("NOOP %d after AUTH: %v", i, err)
		}
	}
}

// TestInboundTalkerClosed: on the inbound listener, MAIL FROM:<> no
// longer earns a client the full read timeout: one that then only talks
// is closed once max_session_before_auth has passed.
func TestInboundTalkerClosed(t *testing.T) {
	env := startInbound(t, func(o *InboundOptions) {
		o.ReadTimeout, o.ReadTimeoutBeforeMail = time.Hour, time.Hour
		o.MaxSessionBeforeData, o.MaxCommandsBeforeData = 500*time.Millisecond, 1<<30
	})
	rc, _ := dialFrom(t, "127.0.0.1", env.addr)
	rc.write("EHLO mx.example.net\r\nMAIL FROM:<>\r\n")
	rc.expect("250")
	rc.expect("250")
	if _, last := noopUntilClosed(t, rc); !strings.HasPrefix(last, "421 4.4.2 ") {
		t.Fatalf("a client talking after MAIL got %q, want 421 4.4.2", last)
	}
}

// TestInboundCommandsPerMessage: an inbound sender's accepted RCPTs do not
// count against max_commands_before_auth, and the count starts again
// after each message.
func TestInboundCommandsPerMessage(t *testing.T) {
	const limit = 10
	env := startInbound(t, func(o *InboundOptions) {
		o.ReadTimeout, o.ReadTimeoutBeforeMail, o.MaxSessionBeforeData = time.Hour, time.Hour, time.Hour
		o.MaxCommandsBeforeData = limit
	})
	rc, _ := dialFrom(t, "127.0.0.1", env.addr)
	rc.write("EHLO mx.example.net\r\n")
	rc.expect("250")
	for range 2 {
		rc.write("MAIL FROM:<>\r\n")
		rc.expect("250")
		for range 2 * limit {
			rc.write("RCPT TO:<fbl@bounces.relay.test>\r\n")
			rc.expect("250")
		}
		rc.write("DATA\r\n")
		rc.expect("354")
		rc.write("From: fbl@isp.example\r\nSubject: report\r\n\r\nunreadable\r\n.\r\n")
		rc.expect("250")
	}
	if n, last := noopUntilClosed(t, rc); n != limit || !strings.HasPrefix(last, "421 4.4.2 ") {
		t.Fatalf("after a message, %d NOOPs answered, then %q; want %d, then 421 4.4.2", n, last, limit)
	}
}

// TestImplicitTLSFirstCommandClock: on the implicit-TLS listener the
// handshake is not the client's first command: a client silent since its
// handshake has first_command_timeout, not the shorter read timeout
// before AUTH.
func TestImplicitTLSFirstCommandClock(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) {
		o.ReadTimeout, o.FirstCommandTimeout = time.Hour, time.Hour
		o.ReadTimeoutBeforeAuth = 300 * time.Millisecond
	})
	tc, err := tls.Dial("tcp", h.serve(h.sub.ServeTLS), h.roots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	silent := &rawConn{t: t, c: tc, r: bufio.NewReader(tc)}
	silent.expect("220 ")

	// A client that has sent a command, after the other's handshake, is
	// closed after read_timeout_before_auth.
	rc, _ := dialFrom(t, "127.0.0.1", h.addr)
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	if rest, ok := rc.closed(); !ok || !strings.HasPrefix(rest, "421 4.4.2 ") {
		t.Fatalf("closed %v with %q, want 421 4.4.2", ok, rest)
	}
	silent.write("EHLO app.test\r\n")
	silent.expect("250")
}
