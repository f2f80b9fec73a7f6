package smtpd

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/suppression"
)

// sendText runs one transaction and returns the text of the 250.
func sendText(t *testing.T, c *smtp.Client, to []string, msg string) string {
	t.Helper()
	if err := c.Mail("app@acme.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, msg)
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusText
}

// TestSuppressedAtAccept: a recipient on the suppression list is found
// when the message is accepted: the 250 says so, the app gets
// message.suppressed with the reason, and the recipient is never sent to.
// A message whose every recipient is suppressed keeps no body.
func TestSuppressedAtAccept(t *testing.T) {
	h := newHarness(t)
	sup := boltdb.Suppressions(h.db, []byte("smtpd test hash key"), time.Now)
	h.sub.o.Suppressions = sup // before the first connection
	h.spool.InlineMax = 0      // bodies in files, to see the clean-up
	ctx := context.Background()
	if _, err := sup.Add(ctx, suppression.Entry{Tenant: "acme", Address: "gone@example.net", List: suppression.All, Reason: suppression.Bounce}); err != nil {
		t.Fatal(err)
	}
	// Another tenant's suppression does not apply to acme.
	if _, err := sup.Add(ctx, suppression.Entry{Tenant: "other", Address: "pat@example.net", List: suppression.All, Reason: suppression.Complaint}); err != nil {
		t.Fatal(err)
	}
	c := h.login()
	msg := "From: app@acme.test\r\nSubject: reminder\r\n\r\nSee you.\r\n"
	text := sendText(t, c, []string{"Gone@Example.net", "pat@example.net"}, msg)
	if !strings.Contains(text, "1 of 2 recipients are suppressed") {
		t.Errorf("250 text %q", text)
	}
	// Final at accept, never scheduled: the row says so before any
	// delivery could have run.
	m, err := boltdb.Queue(h.db).Message(ctx, regexp.MustCompile(`queued as ([0-9a-z]+)`).FindStringSubmatch(text)[1])
	if err != nil {
		t.Fatal(err)
	}
	if m.Recipients[0].State != queue.Suppressed || m.Recipients[0].Reason != "bounce" || m.Pending != 1 {
		t.Errorf("rows %+v pending %d, want the first suppressed (bounce) and one pending", m.Recipients, m.Pending)
	}
	got := h.sink.Wait(t, 1, 10*time.Second)
	if got[0].To[0] != "pat@example.net" {
		t.Errorf("delivered to %v, want pat only", got[0].To)
	}
	evs, _ := boltdb.Events(h.db).Events(ctx, "acme", 0, 100)
	var sawSuppressed bool
	for _, ev := range evs {
		if ev.Data.MessageID != "" && strings.EqualFold(ev.Data.Recipient, "gone@example.net") {
			if ev.Type != events.MessageSuppressed || ev.Data.Reason != "bounce" {
				t.Errorf("event for the suppressed recipient: %+v", ev)
			}
			sawSuppressed = true
		}
	}
	if !sawSuppressed {
		t.Error("no message.suppressed event")
	}

	text = sendText(t, c, []string{"gone@example.net"}, msg)
	id := regexp.MustCompile(`queued as ([0-9a-z]+)`).FindStringSubmatch(text)
	if id == nil || !strings.Contains(text, "1 of 1") {
		t.Fatalf("250 text %q", text)
	}
	if _, err := h.spool.ReadAll(id[1]); err == nil {
		t.Error("a message with nothing to send kept its body in the spool")
	}
	c.Quit()
}

// TestMarketingNeedsComposableBody: marketing mail Heed could not give
// its opt-out link (no text part) is refused at DATA with what is wrong;
// the same body on a transactional list is accepted as it is.
func TestMarketingNeedsComposableBody(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	pdfOnly := "From: app@acme.test\r\nSubject: brochure\r\n%sMIME-Version: 1.0\r\n" +
		"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
	err := send(c, "app@acme.test", []string{"pat@example.net"}, fmt.Sprintf(pdfOnly, "X-Heed-List: marketing\r\n"))
	se := wantCode(t, err, 550, "5.6.0")
	if !strings.Contains(se.Message, "opt-out") {
		t.Errorf("reply %q does not say why", se.Message)
	}
	if err := send(c, "app@acme.test", []string{"pat@example.net"}, fmt.Sprintf(pdfOnly, "")); err != nil {
		t.Fatalf("transactional: %v", err)
	}
	h.sink.Wait(t, 1, 10*time.Second)
}

// TestHeaderNameWithSpace: "Subject : x" is refused at DATA, since DKIM
// verifiers disagree on it.
func TestHeaderNameWithSpace(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	err := send(c, "app@acme.test", []string{"pat@example.net"}, "From: app@acme.test\r\nSubject : hi\r\n\r\nhello\r\n")
	wantCode(t, err, 550, "5.6.0")
}

// TestRecipientSuppressionCannotHold: an address the suppression list
// cannot normalise is refused at RCPT with the reason, and the other
// recipients of the transaction go through.
func TestRecipientSuppressionCannotHold(t *testing.T) {
	h := newHarness(t)
	c := h.login()
	if err := c.Mail("app@acme.test", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Rcpt("a@ab--cd.example", nil), 553, "5.1.3")
	if err := c.Rcpt("pat@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: app@acme.test\r\nSubject: hi\r\n\r\nhello\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h.sink.Wait(t, 1, 10*time.Second)
}

// TestOnlyGoneMailboxesSuppress: a late DSN suppresses the address at
// once only when its evidence says the mailbox is gone; a content
// refusal, a full or disabled mailbox (5.2.1), the tenant's own DMARC
// failure, or a 5.1.1 whose text says the mailbox is full are soft: they
// bounce that message and count, they do not suppress on their own.
func TestOnlyGoneMailboxesSuppress(t *testing.T) {
	for _, c := range []struct {
		status, diag string
		hard, final  bool
	}{
		{"5.1.1", "550 5.1.1 <pat@example.net>: Recipient address rejected: User unknown", true, true},
		{"5.1.10", "556 5.1.10 Recipient address has null MX", true, true},
		{"5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", false, true},
		{"5.2.1", "550 5.2.1 mailbox unavailable", false, true},
		{"5.1.1", "552 5.1.1 <pat@example.net>: mailbox full, over quota", false, true},
		{"5.7.1", "550 5.7.1 message content rejected", false, true},
		{"5.7.26", "550 5.7.26 unauthenticated email from acme.test is not accepted due to DMARC policy", false, true},
		{"5.2.2", "552 5.2.2 mailbox full", false, true},
		{"5.3.4", "552 5.3.4 message too big", false, true},
		{"4.2.2", "452 4.2.2 mailbox full", false, false},
	} {
		action := "failed"
		if c.status[0] == '4' {
			action = "delayed"
		}
		rep, err := report.Parse([]byte(dsnFor("pat@example.net", action, c.status, c.diag)))
		if err != nil {
			t.Fatalf("%s %s: %v", c.status, c.diag, err)
		}
		st, final := permanentFor(rep, "pat@example.net")
		if hard := st.Verdict == report.Hard; hard != c.hard || final != c.final {
			t.Errorf("%s %q: hard=%v final=%v (reason %s), want hard=%v final=%v", c.status, c.diag, hard, final, st.Reason, c.hard, c.final)
		}
	}
}

// dsnFor is an RFC 3464 report about rcpt.
func dsnFor(rcpt, action, status, diag string) string {
	return "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\nAction: " + action + "\r\nStatus: " + status + "\r\n" +
		"Diagnostic-Code: smtp; " + diag + "\r\n\r\n--b--\r\n"
}
