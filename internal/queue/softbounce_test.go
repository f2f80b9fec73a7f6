package queue_test

import (
	"context"
	. "github.com/heedmail/heed/internal/queue"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/testsink"
	"github.com/heedmail/heed/suppression"
)

// testSoftRule is the default rule (bounces.soft_*).
var testSoftRule = suppression.SoftRule{Limit: 3, Span: 72 * time.Hour, Window: 30 * 24 * time.Hour}

// fullMailbox answers 552 5.2.2 to RCPT for full@example.net, except on
// the attempts deliver names, 550 5.1.1 for gone@example.net, 550 5.2.1
// (disabled) for off@example.net and 550 5.1.1 with a full mailbox's
// words for quota@example.net.
func fullMailbox(deliver ...int) func(stage, from, rcpt string, attempt int) *smtp.SMTPError {
	return func(stage, _, rcpt string, attempt int) *smtp.SMTPError {
		switch {
		case stage != "RCPT":
		case rcpt == "gone@example.net":
			return testsink.SMTPError(550, "5.1.1", "no such user")
		case rcpt == "off@example.net":
			return testsink.SMTPError(550, "5.2.1", "this account has been disabled")
		case rcpt == "quota@example.net":
			return testsink.SMTPError(550, "5.1.1", "mailbox full, over quota")
		case rcpt == "full@example.net":
			for _, d := range deliver {
				if attempt == d {
					return nil
				}
			}
			return testsink.SMTPError(552, "5.2.2", "<full@example.net>: mailbox full")
		}
		return nil
	}
}

// bounceOnce submits a message to addr and waits for its bounce.
func (e *env) bounceOnce(addr string) *Message {
	e.t.Helper()
	m := e.submit(addr)
	e.waitState(m.ID, 0, Bounced)
	return m
}

// bounceEvent returns the message.bounced event of message id.
func (e *env) bounceEvent(id string) events.Event {
	e.t.Helper()
	evs, err := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == events.MessageBounced && ev.Data.MessageID == id {
			return ev
		}
	}
	e.t.Fatalf("no message.bounced event for %s", id)
	return events.Event{}
}

// TestSoftBouncesAtDeliveryEscalate: 552 5.2.2 (mailbox full) at RCPT is
// a soft bounce: the first two suppress nothing, the third, 72 hours
// after the first, suppresses the address with the three as evidence,
// and the next message is not sent. 550 5.1.1 suppresses at once; 5.2.1
// (a disabled account) and a 5.1.1 whose words say the mailbox is full
// are soft. The events say why and how hard.
func TestSoftBouncesAtDeliveryEscalate(t *testing.T) {
	e := newEnv(t, fullMailbox())
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	_, sup := e.withCompliance(clk.Now, time.Hour)
	ctx := context.Background()

	gone := e.bounceOnce("gone@example.net")
	if es, _ := sup.Lookup(ctx, "acme", "gone@example.net"); len(es) != 1 || es[0].Reason != suppression.Bounce || es[0].Evidence != nil {
		t.Errorf("after one 550 5.1.1: %+v, want a bounce entry at once", es)
	}
	if d := e.bounceEvent(gone.ID).Data; d.Reason != "user-unknown" || d.BounceType != "hard" || d.Channel != "smtp" {
		t.Errorf("hard bounce event %+v", d)
	}
	for addr, reason := range map[string]string{"off@example.net": "suspended", "quota@example.net": "mailbox-full"} {
		m := e.bounceOnce(addr)
		if es, _ := sup.Lookup(ctx, "acme", addr); len(es) != 0 {
			t.Errorf("%s: one soft bounce suppressed: %+v", addr, es)
		}
		if d := e.bounceEvent(m.ID).Data; d.Reason != reason || d.BounceType != "soft" {
			t.Errorf("%s: event %+v, want a soft bounce (%s)", addr, d, reason)
		}
	}

	var ids []string
	for i, step := range []time.Duration{0, 36 * time.Hour, 36 * time.Hour} {
		clk.Add(step)
		m := e.bounceOnce("full@example.net")
		ids = append(ids, m.ID)
		if d := e.bounceEvent(m.ID).Data; d.Reason != "mailbox-full" || d.BounceType != "soft" || !strings.Contains(d.Reply, "552 5.2.2") {
			t.Errorf("soft bounce %d: event %+v", i+1, d)
		}
		es, _ := sup.Lookup(ctx, "acme", "full@example.net")
		if i < 2 && len(es) != 0 {
			t.Fatalf("after %d soft bounce(s): suppressed %+v", i+1, es)
		}
		if i == 2 && len(es) != 1 {
			t.Fatalf("after 3 soft bounces over 72h: %+v, want one bounce entry", es)
		}
	}
	es, _ := sup.Lookup(ctx, "acme", "full@example.net")
	if es[0].Reason != suppression.Bounce || es[0].List != suppression.All || es[0].Channel != "smtp" || es[0].Evidence == nil {
		t.Fatalf("entry %+v", es[0])
	}
	ev := *es[0].Evidence
	if len(ev) != 3 {
		t.Fatalf("evidence %+v, want the three bounces", ev)
	}
	for i, b := range ev {
		if b.MessageID != ids[i] || b.Status != "5.2.2" || b.Reason != "mailbox-full" || b.Channel != "smtp" ||
			!strings.Contains(b.Diagnostic, "mailbox full") || b.Time.IsZero() {
			t.Errorf("evidence %d: %+v", i, b)
		}
	}
	if span := ev[2].Time.Sub(ev[0].Time); span != 72*time.Hour {
		t.Errorf("evidence spans %s, want 72h", span)
	}
	next := e.submit("full@example.net")
	if r := e.waitState(next.ID, 0, Suppressed); r.Reason != "bounce" {
		t.Errorf("next message: %+v", r)
	}
}

// TestSoftBouncesWithinSpan: three soft bounces within an hour are one bad
// hour: nothing is suppressed until a fourth comes 72 hours after the
// first.
func TestSoftBouncesWithinSpan(t *testing.T) {
	e := newEnv(t, fullMailbox())
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	_, sup := e.withCompliance(clk.Now, time.Hour)
	ctx := context.Background()
	for range 3 {
		e.bounceOnce("full@example.net")
		clk.Add(20 * time.Minute)
	}
	if es, _ := sup.Lookup(ctx, "acme", "full@example.net"); len(es) != 0 {
		t.Fatalf("three soft bounces within an hour suppressed: %+v", es)
	}
	clk.Add(72*time.Hour - time.Hour)
	e.bounceOnce("full@example.net")
	if es, _ := sup.Lookup(ctx, "acme", "full@example.net"); len(es) != 1 || es[0].Evidence == nil || len(*es[0].Evidence) != 4 {
		t.Fatalf("after a fourth 72h after the first: %+v, want a bounce entry listing four", es)
	}
}

// TestDeliveryResetsSoftBounces: two soft bounces, then a delivery, then a
// third 72 hours after the first: the count started again at the
// delivery, so nothing is suppressed.
func TestDeliveryResetsSoftBounces(t *testing.T) {
	e := newEnv(t, fullMailbox(3)) // the third attempt is taken
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	_, sup := e.withCompliance(clk.Now, time.Hour)
	ctx := context.Background()
	e.bounceOnce("full@example.net")
	clk.Add(36 * time.Hour)
	e.bounceOnce("full@example.net")
	clk.Add(time.Hour)
	ok := e.submit("full@example.net")
	e.waitState(ok.ID, 0, Delivered)
	clk.Add(35 * time.Hour)
	last := e.bounceOnce("full@example.net")
	if es, _ := sup.Lookup(ctx, "acme", "full@example.net"); len(es) != 0 {
		t.Fatalf("a delivery between did not reset the count: %+v", es)
	}
	h, err := sup.SoftBounces(ctx, "acme", "full@example.net")
	if err != nil || h == nil || len(h.Bounces) != 1 || h.Bounces[0].MessageID != last.ID {
		t.Fatalf("history %+v, %v; want only the bounce after the delivery", h, err)
	}
}
