package smtpd

import (
	"strings"
	"testing"
)

// Keys the session looks up by what the client sent must answer alike on
// every backend: PostgreSQL refuses a NUL or bytes that are not UTF-8 in a
// text parameter, where bbolt finds nothing. A username or list id of
// such bytes names nothing, and the client gets the reply for an unknown
// one, never a 451.

// TestAuthUsernameNotText: an AUTH username that is not text is a bad
// credential (535 5.7.8), and counts as a failed AUTH like any other: the
// connection's last allowed failure closes it.
func TestAuthUsernameNotText(t *testing.T) {
	for _, b := range tenantBackends {
		t.Run(b, func(t *testing.T) {
			h := newHarnessOn(t, b, func(o *SubmissionOptions) { o.MaxAuthFailures = 4 })
			rc := h.raw()
			rc.write("EHLO app.test\r\n")
			rc.expect("250")
			for _, user := range []string{"\xff", h.user + "\xc3"} {
				rc.write("AUTH PLAIN " + plainIR(user, h.pass) + "\r\n")
				if got := rc.reply(); !strings.HasPrefix(got, "535 5.7.8 ") {
					t.Errorf("AUTH PLAIN as %q: got %q, want 535 5.7.8", user, got)
				}
			}
			for i, user := range []string{"a\x00b", h.user + "\x00"} {
				rc.write("AUTH LOGIN " + base64Std(user) + "\r\n")
				rc.expect("334 ")
				rc.write(base64Std(h.pass) + "\r\n")
				got, want := rc.reply(), "535 5.7.8 "
				if i == 1 {
					want = "421 4.7.0 " // the fourth failure on this connection
				}
				if !strings.HasPrefix(got, want) {
					t.Errorf("AUTH LOGIN as %q: got %q, want %s", user, got, want)
				}
			}
		})
	}
}

// TestListHeaderNotText: an X-Heed-List that is not text names an unknown
// list (550 5.7.1), and the session goes on.
func TestListHeaderNotText(t *testing.T) {
	for _, b := range tenantBackends {
		t.Run(b, func(t *testing.T) {
			h := newHarnessOn(t, b)
			for _, list := range []string{"\xff", "news\xc3"} {
				c := h.login()
				err := send(c, "hello@acme.test", []string{"rcpt@example.net"},
					"From: hello@acme.test\r\nX-Heed-List: "+list+"\r\nSubject: hi\r\n\r\nhello\r\n")
				if se := wantCode(t, err, 550, "5.7.1"); !strings.Contains(se.Message, "Unknown list") {
					t.Errorf("X-Heed-List %q: got %q, want the unknown list's reply", list, se.Message)
				}
			}
			if n := h.accepted("acme"); n != 0 {
				t.Errorf("%d messages accepted, want none", n)
			}
		})
	}
}
