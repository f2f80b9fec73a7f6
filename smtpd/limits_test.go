package smtpd

import (
	"bufio"
	"context"
	"io"
	"log/slog"
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
// connections (default 10) and closes one idle before MAIL, but gives a
// client that has started a transaction the full read timeout.
func TestInboundPerClientAndIdle(t *testing.T) {
	in := NewInbound(InboundOptions{
		Hostname: "relay.test", ReadTimeout: time.Hour, ReadTimeoutBeforeMail: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go in.Serve(l)
	t.Cleanup(func() { in.Shutdown(context.Background()) })
	addr := l.Addr().String()

	mailing, _ := dialFrom(t, "127.0.0.1", addr)
	mailing.write("EHLO mx.example.net\r\nMAIL FROM:<>\r\n")
	mailing.expect("250")
	mailing.expect("250")
	idle, _ := dialFrom(t, "127.0.0.1", addr)
	idle.write("EHLO mx.example.net\r\n")
	idle.expect("250")

	if rest, ok := idle.closed(); !ok || !strings.HasPrefix(rest, "421 4.4.2 ") {
		t.Fatalf("idle connection before MAIL: closed %v with %q, want 421 4.4.2", ok, rest)
	}
	mailing.write("RSET\r\n")
	mailing.expect("250")

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
