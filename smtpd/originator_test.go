package smtpd

import (
	"strings"
	"testing"
)

// TestOriginatorFields: Sender, Resent-From and Resent-Sender are held to
// the From rule. A tenant that names another tenant's domain in any of
// them, in any resent block, is refused with 550 5.7.1 naming the field
// and the domain, and nothing is queued; the tenant's own domains pass.
func TestOriginatorFields(t *testing.T) {
	h := newHarness(t)
	msg := func(extra string) string {
		return "From: hello@acme.test\r\n" + extra + "Subject: hi\r\n\r\nbody\r\n"
	}
	// A resent block (RFC 5322 section 3.6.6) as a forwarding app writes it.
	block := func(from string) string {
		return "Resent-From: " + from + "\r\nResent-Date: Mon, 23 Nov 2026 09:00:00 +0000\r\nResent-To: pat@example.net\r\n"
	}
	refused := []struct {
		name, extra, enh, contains string
	}{
		{"another tenant's Sender", "Sender: x@other.test\r\n", "5.7.1", "Sender: header domain other.test"},
		{"a foreign Sender", "Sender: Bank <ceo@bank.example>\r\n", "5.7.1", "Sender: header domain bank.example"},
		{"another tenant's Resent-From", block("x@other.test"), "5.7.1", "Resent-From: header domain other.test"},
		{"another tenant's Resent-From in the second block", block("hello@acme.test") + block("ok@acme.test, x@other.test"),
			"5.7.1", "Resent-From: header domain other.test"},
		{"another tenant's Resent-Sender", block("hello@acme.test") + "Resent-Sender: x@other.test\r\n", "5.7.1", "Resent-Sender: header domain other.test"},
		{"two Sender fields", "Sender: a@acme.test\r\nSender: b@acme.test\r\n", "5.6.0", "at most one Sender"},
		{"a Sender that is no address", "Sender: nobody\r\n", "5.6.0", "Sender: header field is not a valid address"},
		{"a Sender of two mailboxes", "Sender: a@acme.test, b@acme.test\r\n", "5.6.0", "Sender: header field must hold exactly one address (RFC 5322 section 3.6.2), it holds 2"},
		{"a Resent-Sender of two mailboxes", block("hello@acme.test") + "Resent-Sender: a@acme.test, b@acme.test\r\n", "5.6.0",
			"Resent-Sender: header field must hold exactly one address (RFC 5322 section 3.6.6)"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			se := wantCode(t, send(h.login(), "hello@acme.test", []string{"pat@example.net"}, msg(tc.extra)), 550, tc.enh)
			if !strings.Contains(se.Message, tc.contains) {
				t.Errorf("reply %q does not say %q", se.Message, tc.contains)
			}
		})
	}
	if n := h.accepted("acme"); n != 0 {
		t.Fatalf("%d refused messages were queued", n)
	}
	own := "Sender: App <app@acme.test>\r\n" + block("hello@acme.test") + block("Desk <desk@acme.test>") + "Resent-Sender: app@acme.test\r\n"
	if err := send(h.login(), "hello@acme.test", []string{"pat@example.net"}, msg(own)); err != nil {
		t.Fatalf("the tenant's own domains in Sender and Resent-*: %v", err)
	}
	if n := h.accepted("acme"); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}
