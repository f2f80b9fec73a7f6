package smtpd

import (
	"bufio"
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

// The end-of-data look-alikes of SEC Consult's SMTP smuggling (2023). A
// relay that passes one of them on lets a downstream server that accepts
// it see a second, forged message.
var smuggling = []struct{ name, seq string }{
	{"LF.LF", "\n.\n"},
	{"CRLF.LF", "\r\n.\n"},
	{"LF.CRLF", "\n.\r\n"},
	{"CR.CR", "\r.\r"},
	{"CRLF.CR", "\r\n.\r"},
	{"CR.CRLF", "\r.\r\n"},
}

func smuggle(h *harness, seq string) string {
	return "MAIL FROM:<hello@acme.test>\r\nRCPT TO:<pat@example.net>\r\nDATA\r\n" +
		"From: hello@acme.test\r\nSubject: first\r\n\r\nhello" + seq +
		"MAIL FROM:<hello@acme.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n" +
		"From: hello@acme.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
}

func (rc *rawConn) transaction(payload string) string {
	rc.write(payload)
	rc.expect("250") // MAIL
	rc.expect("250") // RCPT
	rc.expect("354") // DATA
	return rc.reply()
}

func TestSmugglingRefused(t *testing.T) {
	h := newHarness(t)
	for _, v := range smuggling {
		t.Run(v.name, func(t *testing.T) {
			rc := h.raw()
			rc.write("EHLO app.test\r\nAUTH PLAIN " + plainIR(h.user, h.pass) + "\r\n")
			rc.expect("250")
			rc.expect("235")
			if got := rc.transaction(smuggle(h, v.seq)); !strings.HasPrefix(got, "550 5.6.0") || !strings.Contains(got, "bare CR or LF") {
				t.Fatalf("got %q, want 550 5.6.0 naming the bare line break", got)
			}
			// The session stays usable and in step: nothing of the payload
			// was taken for a command.
			rc.write("NOOP\r\n")
			rc.expect("250")
		})
	}
	checkNothingSmuggled(t, h, 0)
}

// TestSmugglingOverTLS: once TLS is up the raw watch is off and the DATA
// stream check decides. Five variants are refused; for "<CR><LF>.<CR>"
// go-smtp has already dropped the ".<CR>", so what is relayed is one
// message with ordinary CRLF lines: still nothing smuggled.
func TestSmugglingOverTLS(t *testing.T) {
	h := newHarness(t)
	accepted := 0
	for _, v := range smuggling {
		t.Run(v.name, func(t *testing.T) {
			rc := h.raw()
			rc.write("EHLO app.test\r\nSTARTTLS\r\n")
			rc.expect("250")
			rc.expect("220")
			tc := tls.Client(rc.c, h.roots)
			rc.c, rc.r = tc, bufio.NewReader(tc)
			rc.write("EHLO app.test\r\nAUTH PLAIN " + plainIR(h.user, h.pass) + "\r\n")
			rc.expect("250")
			rc.expect("235")
			got := rc.transaction(smuggle(h, v.seq))
			if v.name == "CRLF.CR" {
				if !strings.HasPrefix(got, "250") {
					t.Fatalf("got %q, want the one message accepted", got)
				}
				accepted++
				return
			}
			if !strings.HasPrefix(got, "550 5.6.0") {
				t.Fatalf("got %q, want 550 5.6.0", got)
			}
		})
	}
	checkNothingSmuggled(t, h, accepted)
}

// checkNothingSmuggled sends a control message and checks that the sink got
// it and the accepted ones, none addressed to the victim, and that no
// message carries a bare CR or LF.
func checkNothingSmuggled(t *testing.T, h *harness, accepted int) {
	t.Helper()
	if err := send(h.login(), "hello@acme.test", []string{"control@example.net"}, "From: hello@acme.test\r\nSubject: control\r\n\r\nok\r\n"); err != nil {
		t.Fatal(err)
	}
	msgs := h.sink.Wait(t, accepted+1, 10*time.Second)
	if n := h.accepted("acme"); n != accepted+1 {
		t.Errorf("%d messages queued, want %d", n, accepted+1)
	}
	for _, m := range msgs {
		if m.To[0] == "victim@example.net" {
			t.Errorf("a smuggled message reached the next hop: %q", m.Data)
		}
		d := strings.ReplaceAll(string(m.Data), "\r\n", "")
		if strings.ContainsAny(d, "\r\n") {
			t.Errorf("relayed message has a bare CR or LF: %q", m.Data)
		}
	}
}

func TestNULRefused(t *testing.T) {
	h := newHarness(t)
	err := send(h.login(), "hello@acme.test", []string{"a@example.net"}, "From: hello@acme.test\r\nSubject: x\r\n\r\nnul\x00here\r\n")
	wantCode(t, err, 550, "5.6.0")
}
