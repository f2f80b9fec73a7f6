package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heedmail/heed/internal/testsink"
)

const waitFor = 10 * time.Second

// message is a rendered message with what tends to break transports: a
// line starting with a dot, a lone dot, 8-bit text and a long line.
var message = []byte("From: Shop <news@shop.example>\r\n" +
	"To: <ann@example.org>\r\n" +
	"Subject: Herbst =?utf-8?q?M=C3=A4rz?=\r\n" +
	"\r\n" +
	"Grüße aus Köln\r\n" +
	".leading dot\r\n" +
	".\r\n" +
	string(bytes.Repeat([]byte("x"), 900)) + "\r\n")

func env(n int, to string) Envelope {
	return Envelope{
		MessageID: "msg" + strconv.Itoa(n),
		Recipient: n,
		From:      "bounce+" + strconv.Itoa(n) + "@heed.example",
		To:        to,
		Tenant:    "t1",
		List:      "news",
	}
}

// newTransport starts a transport that the test closes when it ends.
func newTransport(t *testing.T, o Options) *Transport {
	t.Helper()
	if o.Mode == "" {
		o.Mode = ModeMX
	}
	o.Hostname = "relay.heed.test"
	setDefault(&o.ConnectTimeout, 5*time.Second)
	setDefault(&o.CommandTimeout, waitFor)
	o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// routeTo routes example.org to a test server: a testsink or a scripted
// one.
func routeTo(s interface{ Addr() string }) map[string]string {
	return map[string]string{"example.org": s.Addr()}
}

func wantResult(t *testing.T, got Result, code int, enhanced, text string) {
	t.Helper()
	if got.Code != code || got.Enhanced != enhanced || (text != "" && got.Text != text) {
		t.Fatalf("result = %q, want %d %s %s", got, code, enhanced, text)
	}
}

func TestRouteDeliversByteForByte(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	// The route wins even in capture mode.
	dir := t.TempDir()
	tr := newTransport(t, Options{Mode: ModeCapture, CaptureDir: dir, Routes: map[string]string{"EXAMPLE.org.": s.Addr()}})

	r := tr.Deliver(t.Context(), env(1, "Ann@Example.ORG"), message)
	if !r.Delivered() || r.Host != s.Addr() {
		t.Fatalf("result = %q via %q", r, r.Host)
	}
	m := s.Wait(t, 1, waitFor)[0]
	if !bytes.Equal(m.Data, message) {
		t.Errorf("data differs:\n got %q\nwant %q", m.Data, message)
	}
	if m.From != "bounce+1@heed.example" || len(m.To) != 1 || m.To[0] != "Ann@Example.ORG" {
		t.Errorf("envelope = %q → %q", m.From, m.To)
	}
	if got, _ := ListCaptured(dir); len(got) != 0 {
		t.Errorf("routed message was also captured: %v", got)
	}
}

func TestReusesConnection(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := newTransport(t, Options{Routes: routeTo(s)})
	for i := range 3 {
		if r := tr.Deliver(t.Context(), env(i, "ann@example.org"), message); !r.Delivered() {
			t.Fatalf("delivery %d: %q", i, r)
		}
	}
	msgs := s.Wait(t, 3, waitFor)
	if s.Connections() != 1 || msgs[2].Conn != 1 {
		t.Errorf("connections = %d, want 1", s.Connections())
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := newTransport(t, Options{Routes: routeTo(s), MaxIdlePerHost: 4})
	const workers, each = 8, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				if r := tr.Deliver(t.Context(), env(n, "ann@example.org"), message); !r.Delivered() {
					t.Errorf("delivery %d: %q", n, r)
				}
			}
		})
	}
	wg.Wait()
	s.Wait(t, workers*each, waitFor)
	if c := s.Connections(); c >= workers*each {
		t.Errorf("connections = %d for %d messages: none reused", c, workers*each)
	}
}

func TestStaleCachedConnectionIsReplaced(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := newTransport(t, Options{Routes: routeTo(s)})
	if r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message); !r.Delivered() {
		t.Fatal(r)
	}
	// Break the cached connection under the client, as a server that timed
	// it out would.
	h, _ := parseHop(s.Addr(), false)
	cn := tr.idle.get(h.key())
	if cn == nil {
		t.Fatal("no cached connection")
	}
	_ = cn.nc.Close()
	if !tr.idle.put(cn) {
		t.Fatal("could not put the connection back")
	}
	if r := tr.Deliver(t.Context(), env(2, "ann@example.org"), message); !r.Delivered() {
		t.Fatalf("after stale connection: %q", r)
	}
	s.Wait(t, 2, waitFor)
	if s.Connections() != 2 {
		t.Errorf("connections = %d, want 2", s.Connections())
	}
}

func TestIdleTimeoutExpiresConnections(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := newTransport(t, Options{Routes: routeTo(s), IdleTimeout: time.Nanosecond})
	for i := range 2 {
		if r := tr.Deliver(t.Context(), env(i, "ann@example.org"), message); !r.Delivered() {
			t.Fatal(r)
		}
	}
	s.Wait(t, 2, waitFor)
	if s.Connections() != 2 {
		t.Errorf("connections = %d, want 2 (no reuse past IdleTimeout)", s.Connections())
	}
}

func TestSTARTTLS(t *testing.T) {
	cfg, pool := testsink.SelfSigned(t, "127.0.0.1")
	s := testsink.Start(t, testsink.Options{TLS: cfg})
	// A verifying client proves the session really is TLS with this server.
	tr := newTransport(t, Options{Routes: routeTo(s), TLSConfig: &tls.Config{RootCAs: pool}})
	if r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message); !r.Delivered() {
		t.Fatal(r)
	}
	if m := s.Wait(t, 1, waitFor)[0]; !m.TLS || !bytes.Equal(m.Data, message) {
		t.Errorf("TLS = %v, data equal = %v", m.TLS, bytes.Equal(m.Data, message))
	}
}

func TestBrokenTLSFallsBackToPlaintext(t *testing.T) {
	cfg, _ := testsink.SelfSigned(t, "127.0.0.1")
	s := testsink.Start(t, testsink.Options{TLS: cfg})
	// The client trusts nothing, so every handshake fails.
	tr := newTransport(t, Options{Routes: routeTo(s), IdleTimeout: time.Nanosecond,
		TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
	if r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message); !r.Delivered() {
		t.Fatal(r)
	}
	if m := s.Wait(t, 1, waitFor)[0]; m.TLS || m.Conn != 2 {
		t.Errorf("TLS = %v on connection %d, want plaintext on the second", m.TLS, m.Conn)
	}
	h, _ := parseHop(s.Addr(), false)
	if !tr.isTLSBroken(h.key()) {
		t.Error("host not remembered as TLS-broken")
	}
	// A new connection (IdleTimeout forbids reuse) goes straight to plaintext.
	if r := tr.Deliver(t.Context(), env(2, "ann@example.org"), message); !r.Delivered() {
		t.Fatal(r)
	}
	if m := s.Wait(t, 2, waitFor)[1]; m.TLS || s.Connections() != 3 {
		t.Errorf("TLS = %v, connections = %d, want plaintext on a third", m.TLS, s.Connections())
	}
}

func TestRemoteReplies(t *testing.T) {
	tests := []struct {
		stage          string
		reply          *smtp.SMTPError
		code           int
		enhanced, text string
		permanent      bool
	}{
		{testsink.StageRcpt, testsink.SMTPError(451, "4.7.1", "greylisted, try later"), 451, "4.7.1", "greylisted, try later", false},
		{testsink.StageRcpt, testsink.SMTPError(550, "5.1.1", "no such user"), 550, "5.1.1", "no such user", true},
		{testsink.StageMail, testsink.SMTPError(553, "5.7.1", "sender rejected"), 553, "5.7.1", "sender rejected", true},
		{testsink.StageData, testsink.SMTPError(554, "5.7.1", "spam"), 554, "5.7.1", "spam", true},
		{testsink.StageData, testsink.SMTPError(452, "4.2.2", "mailbox full"), 452, "4.2.2", "mailbox full", false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.stage, tc.code), func(t *testing.T) {
			s := testsink.Start(t, testsink.Options{
				Reply: func(stage, from, rcpt string, attempt int) *smtp.SMTPError {
					if stage == tc.stage && attempt == 1 {
						return tc.reply
					}
					return nil
				},
			})
			tr := newTransport(t, Options{Routes: routeTo(s)})
			r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
			wantResult(t, r, tc.code, tc.enhanced, tc.text)
			if r.Permanent() != tc.permanent || r.Delivered() || r.Host != s.Addr() {
				t.Errorf("permanent = %v, delivered = %v, host = %q", r.Permanent(), r.Delivered(), r.Host)
			}
			// The rejection left the session usable: the retry reuses it.
			if r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message); !r.Delivered() {
				t.Fatalf("second attempt: %q", r)
			}
			if s.Connections() != 1 {
				t.Errorf("connections = %d, want 1", s.Connections())
			}
		})
	}
}

func TestSmarthostAuthOverSTARTTLS(t *testing.T) {
	cfg, _ := testsink.SelfSigned(t)
	s := testsink.Start(t, testsink.Options{TLS: cfg, Users: map[string]string{"relay": "s3cret"}})
	tr := newTransport(t, Options{Mode: ModeSmarthost, Smarthost: s.Addr(),
		SmarthostUsername: "relay", SmarthostPassword: "s3cret"})
	if r := tr.Deliver(t.Context(), env(1, "bob@anywhere.example"), message); !r.Delivered() {
		t.Fatal(r)
	}
	if m := s.Wait(t, 1, waitFor)[0]; m.AuthUser != "relay" || !m.TLS {
		t.Errorf("auth user = %q, TLS = %v", m.AuthUser, m.TLS)
	}
}

func TestSmarthostBadPasswordIsTemporary(t *testing.T) {
	cfg, _ := testsink.SelfSigned(t)
	s := testsink.Start(t, testsink.Options{TLS: cfg, Users: map[string]string{"relay": "s3cret"}})
	tr := newTransport(t, Options{Mode: ModeSmarthost, Smarthost: s.Addr(),
		SmarthostUsername: "relay", SmarthostPassword: "wrong"})
	r := tr.Deliver(t.Context(), env(1, "bob@anywhere.example"), message)
	// A relay misconfiguration must not bounce the recipient.
	wantResult(t, r, 451, "4.4.1", "")
	if !bytes.Contains([]byte(r.Text), []byte("535")) {
		t.Errorf("text %q does not carry the AUTH reply", r.Text)
	}
}

func TestUnreachableRouteIsTemporary(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	tr := newTransport(t, Options{Routes: map[string]string{"example.org": addr}})
	r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
	wantResult(t, r, 451, "4.4.1", "")
	if r.Host != "" {
		t.Errorf("host = %q, want none", r.Host)
	}
}

func TestCancelledContext(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := newTransport(t, Options{Routes: routeTo(s)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := tr.Deliver(ctx, env(1, "ann@example.org"), message)
	if r.Delivered() || r.Permanent() {
		t.Fatalf("result = %q, want temporary", r)
	}
}

func TestInvalidAddresses(t *testing.T) {
	tr := newTransport(t, Options{})
	for _, to := range []string{"no-domain", "a@", "a@b\r\nRCPT TO:<x@y>"} {
		if r := tr.Deliver(t.Context(), env(1, to), message); !r.Permanent() || r.Enhanced != "5.1.3" {
			t.Errorf("%q: %q, want 5.1.3", to, r)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Mode: "relay"},
		{Mode: ModeCapture},
		{Mode: ModeSmarthost, Smarthost: "no-port"},
		{Mode: ModeMX, Routes: map[string]string{"example.org": "host:0"}},
	} {
		if tr, err := New(o); err == nil {
			_ = tr.Close()
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestResultString(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Code: 550, Enhanced: "5.1.1", Text: "no such user"}, "550 5.1.1 no such user"},
		{Result{Code: 451, Text: "later"}, "451 later"},
		{fromSuccess("2.0.0 OK: queued as 42", "h:25"), "250 2.0.0 OK: queued as 42"},
		{fromSuccess("Ok", "h:25"), "250 Ok"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
