package smtpd

import (
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestRefusedWhileDatabaseDown: while the node's health probe says the
// database is down, a new plaintext connection gets 421 4.3.2 in place
// of the greeting, and an implicit-TLS one gets it inside TLS at EHLO;
// the connection is closed either way. Once the database answers again,
// the same listeners accept mail.
func TestRefusedWhileDatabaseDown(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	h := newHarness(t, func(o *SubmissionOptions) { o.Unavailable = down.Load })
	tlsAddr := h.serve(h.sub.ServeTLS)

	// go-smtp's client reads the greeting with its first command.
	pc, err := smtp.Dial(h.addr)
	if err == nil {
		err = pc.Hello("app.example")
		pc.Close()
	}
	wantCode(t, err, 421, "4.3.2")
	// In place of the greeting, before the client says anything (not at
	// EHLO), and the connection closed after it.
	rc, greeting := dialFrom(t, "127.0.0.1", h.addr)
	if !strings.HasPrefix(greeting, "421 4.3.2 ") {
		t.Errorf("plaintext greeting while down: %q, want 421 4.3.2", greeting)
	}
	if rest, ok := rc.closed(); !ok || rest != "" {
		t.Errorf("after the 421 greeting: %q, closed %v; want the connection closed", rest, ok)
	}

	conn, err := tls.Dial("tcp", tlsAddr, h.roots)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	wantCode(t, c.Hello("app.example"), 421, "4.3.2")
	if err := c.Noop(); err == nil {
		t.Error("the implicit-TLS connection stayed open after the 421")
	}
	c.Close()

	down.Store(false)
	for _, dial := range []func() (*smtp.Client, error){
		func() (*smtp.Client, error) { return smtp.Dial(h.addr) },
		func() (*smtp.Client, error) { return smtp.DialTLS(tlsAddr, h.roots) },
	} {
		c, err := dial()
		if err != nil {
			t.Fatalf("after the database came back: %v", err)
		}
		if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
			t.Fatal(err)
		}
		if err := send(c, "hello@acme.test", []string{"a@example.net"}, goodMsg); err != nil {
			t.Fatalf("after the database came back: %v", err)
		}
		c.Close()
	}
}
