package smtpd

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const goodMsg = "From: Acme Dental <hello@acme.test>\r\n" +
	"To: pat@example.net\r\n" +
	"Subject: Your appointment on Tuesday\r\n" +
	"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n" +
	"Message-ID: <appt-1@app.test>\r\n" +
	"X-Heed-List: marketing\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"See you at 10:00.\r\n" +
	".. a line that starts with a dot\r\n"

// TestSubmitDeliversByteForByte: what the app sent reaches the next hop
// unchanged but for the header fields Heed owns: X-Heed-List is removed
// and a Received trace field is added at the top.
func TestSubmitDeliversByteForByte(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	if err := c.Mail("hello@acme.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("pat@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, goodMsg)
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.StatusText, "queued as ") {
		t.Errorf("250 reply %q does not name the queue id", resp.StatusText)
	}
	msgs := h.sink.Wait(t, 1, 10*time.Second)
	got := string(msgs[0].Data)
	received, rest, _ := strings.Cut(got, "\r\n")
	// A folded Received continues on lines starting with white space.
	for strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\t") {
		var line string
		line, rest, _ = strings.Cut(rest, "\r\n")
		received += line
	}
	if !strings.HasPrefix(received, "Received: from app.test (127.0.0.1) by relay.test (Heed) with ESMTPA id ") ||
		!strings.Contains(received, "for <pat@example.net>") {
		t.Fatalf("first header field is %q, want Heed's Received", received)
	}
	want := strings.Replace(goodMsg, "X-Heed-List: marketing\r\n", "", 1)
	if rest != want {
		t.Errorf("delivered message differs:\n got %q\nwant %q", rest, want)
	}
	if m := msgs[0]; len(m.To) != 1 || m.To[0] != "pat@example.net" || !strings.HasPrefix(m.From, "b-") || !strings.HasSuffix(m.From, "@bounces.relay.test") {
		t.Errorf("envelope = %q → %q, want a VERP sender at bounces.relay.test → pat@example.net", m.From, m.To)
	}
}

// TestRefusals: every refusal of the policy gate with its reply code, and
// none of the refused messages is queued.
func TestRefusals(t *testing.T) {
	h := newHarness(t)
	msg := func(from string, extra string) string {
		return "From: " + from + "\r\n" + extra + "Subject: hi\r\n\r\nbody\r\n"
	}
	cases := []struct {
		name     string
		login    bool
		from     string
		to       []string
		body     string
		code     int
		enh      string
		contains string
	}{
		{"no AUTH", false, "hello@acme.test", []string{"a@example.net"}, msg("hello@acme.test", ""), 530, "5.7.0", "Authentication required"},
		{"foreign envelope domain", true, "hello@gmail.com", []string{"a@example.net"}, msg("hello@acme.test", ""), 550, "5.7.1", "gmail.com"},
		{"another tenant's envelope domain", true, "hello@other.test", []string{"a@example.net"}, msg("hello@acme.test", ""), 550, "5.7.1", "other.test"},
		{"foreign From: domain", true, "hello@acme.test", []string{"a@example.net"}, msg("ceo@bank.example", ""), 550, "5.7.1", "bank.example"},
		{"another tenant's From: domain", true, "hello@acme.test", []string{"a@example.net"}, msg("x@other.test", ""), 550, "5.7.1", "other.test"},
		{"two From: fields", true, "hello@acme.test", []string{"a@example.net"}, msg("hello@acme.test", "From: hello@acme.test\r\n"), 550, "5.6.0", "exactly one From"},
		{"no From: field", true, "hello@acme.test", []string{"a@example.net"}, "Subject: x\r\n\r\nbody\r\n", 550, "5.6.0", "exactly one From"},
		{"oversize", true, "hello@acme.test", []string{"a@example.net"}, msg("hello@acme.test", "") + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 2000), 552, "5.3.4", ""},
		{"too many recipients", true, "hello@acme.test", []string{"1@example.net", "2@example.net", "3@example.net", "4@example.net", "5@example.net", "6@example.net"}, msg("hello@acme.test", ""), 452, "4.5.3", ""},
		{"unknown list", true, "hello@acme.test", []string{"a@example.net"}, msg("hello@acme.test", "X-Heed-List: promos\r\n"), 550, "5.7.1", "promos"},
		{"bad recipient syntax", true, "hello@acme.test", []string{"a..b@example.net"}, msg("hello@acme.test", ""), 501, "5.1.3", ""},
		{"null sender", true, "", []string{"a@example.net"}, msg("hello@acme.test", ""), 550, "5.7.1", "null sender"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial()
			if tc.login {
				if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
					t.Fatal(err)
				}
			}
			se := wantCode(t, send(c, tc.from, tc.to, tc.body), tc.code, tc.enh)
			if !strings.Contains(se.Message, tc.contains) {
				t.Errorf("reply %q does not mention %q", se.Message, tc.contains)
			}
		})
	}
	if n := h.accepted("acme"); n != 0 {
		t.Errorf("%d refused messages were queued", n)
	}
}

// TestWrongPasswordAndClose: each wrong credential gets 535, and the
// connection's fifth failure closes it. The per-address lockout is raised
// out of the way here; TestAuthLockout holds it.
func TestWrongPasswordAndClose(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) { o.MaxAuthFailuresPerClient, o.MaxAuthFailuresPerUsername = 100, 100 })
	c := h.dial()
	wantCode(t, c.Auth(sasl.NewPlainClient("", h.user, "wrong")), 535, "5.7.8")
	wantCode(t, c.Auth(sasl.NewPlainClient("", "nobody", h.pass)), 535, "5.7.8")
	// Another tenant's password with this tenant's username.
	wantCode(t, c.Auth(sasl.NewPlainClient("", h.user, h.pass2)), 535, "5.7.8")

	// The fifth failure on one connection closes it.
	rc := h.raw()
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	for i := 1; i <= 5; i++ {
		rc.write("AUTH PLAIN " + plainIR(h.user, "bad") + "\r\n")
		if i < 5 {
			rc.expect("535 5.7.8")
		} else {
			rc.expect("421 4.7.0")
		}
	}
	if line, err := rc.r.ReadString('\n'); err == nil {
		t.Fatalf("connection still open after 5 failures, read %q", line)
	}
	// Below the address's limit, the right password still works.
	if err := send(h.login(), "hello@acme.test", []string{"a@example.net"}, goodMsg); err != nil {
		t.Fatal(err)
	}
}

func TestAuthLogin(t *testing.T) {
	h := newHarness(t)
	rc := h.raw()
	rc.write("EHLO app.test\r\n")
	rc.expect("250")
	rc.write("AUTH LOGIN\r\n")
	rc.expect("334 " + base64Std("Username:"))
	rc.write(base64Std(h.user) + "\r\n")
	rc.expect("334 " + base64Std("Password:"))
	rc.write(base64Std(h.pass) + "\r\n")
	rc.expect("235 2.0.0")
}

// TestAuthNeedsTLSOffLoopback: a client that is not local may not send its
// password in clear; after STARTTLS it may.
func TestAuthNeedsTLSOffLoopback(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) { o.Local = func(netip.Addr) bool { return false } })
	c := h.dial()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised before TLS to a remote client")
	}
	wantCode(t, c.Auth(sasl.NewPlainClient("", h.user, h.pass)), 538, "5.7.11")
	c, err := smtp.DialStartTLS(h.addr, h.roots)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
		t.Fatalf("AUTH after STARTTLS: %v", err)
	}
	if err := send(c, "hello@acme.test", []string{"a@example.net"}, goodMsg); err != nil {
		t.Fatal(err)
	}
	m := h.sink.Wait(t, 1, 10*time.Second)[0]
	if !strings.Contains(string(m.Data), "with ESMTPSA id") {
		t.Errorf("Received field does not record TLS and AUTH: %.200q", m.Data)
	}
}

func TestImplicitTLS(t *testing.T) {
	h := newHarness(t)
	addr := h.serve(h.sub.ServeTLS)
	conn, err := tls.Dial("tcp", addr, h.roots)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "hello@acme.test", []string{"a@example.net"}, goodMsg); err != nil {
		t.Fatal(err)
	}
	h.sink.Wait(t, 1, 10*time.Second)
}

// TestIPCredential: mail from a network an ip credential names needs no
// AUTH and belongs to that tenant.
func TestIPCredential(t *testing.T) {
	h := newHarness(t)
	if _, err := h.reg.CreateIP(t.Context(), "acme", "127.0.0.0/8", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reg.CreateIP(t.Context(), "other", "127.0.0.1/32", ""); err == nil {
		t.Fatal("an overlapping network of another tenant was accepted")
	}
	c := h.dial()
	if err := send(c, "hello@acme.test", []string{"a@example.net"}, goodMsg); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send(h.dial(), "x@other.test", []string{"a@example.net"}, goodMsg), 550, "5.7.1")
	h.sink.Wait(t, 1, 10*time.Second)
}

func TestConnectionLimit(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) { o.MaxConnections = 1 })
	h.raw() // holds the only slot
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line := make([]byte, 64)
	n, _ := c.Read(line)
	if !strings.HasPrefix(string(line[:n]), "421 4.7.0") {
		t.Fatalf("connection over the cap got %q, want 421 4.7.0", line[:n])
	}
}

// TestSpooledBody: a body over the inline limit goes through a spool file
// (fsynced before the 250) and is removed once delivered.
func TestSpooledBody(t *testing.T) {
	h := newHarness(t)
	h.spool.InlineMax = 0
	if err := send(h.login(), "hello@acme.test", []string{"a@example.net"}, goodMsg); err != nil {
		t.Fatal(err)
	}
	m := h.sink.Wait(t, 1, 10*time.Second)[0]
	if !strings.HasSuffix(string(m.Data), "See you at 10:00.\r\n.. a line that starts with a dot\r\n") {
		t.Errorf("spooled body delivered as %q", m.Data)
	}
}
