package smtpd

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
)

// dsnEnv is the inbound listener over its own bbolt file, with the queue
// store the reports name messages of and the suppression list with the
// default soft-bounce rule, and one client connection from an MTA.
type dsnEnv struct {
	t    *testing.T
	in   *inboundEnv
	db   *store.DB
	qs   *queue.Records
	sup  *suppression.Service
	verp queue.VERP
	c    *smtp.Client
}

func startDSN(t *testing.T) *dsnEnv {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &dsnEnv{t: t, db: db, qs: boltdb.Queue(db)}
	e.sup = boltdb.Suppressions(db, bytes.Repeat([]byte{4}, 32), time.Now).WithSoftBounces(
		suppression.SoftRule{Limit: 3, Span: 72 * time.Hour, Window: 30 * 24 * time.Hour})
	e.qs.SuppressHardBounces(e.sup)
	e.in = startInbound(t, func(o *InboundOptions) {
		o.Messages, o.Suppressions, o.Events = e.qs, e.sup, boltdb.Events(db)
		e.verp = o.VERP
	})
	e.c = e.in.dial("127.0.0.1")
	return e
}

// message records a message to rcpt accepted now, as the queue would.
func (e *dsnEnv) message(rcpt string) *queue.Message {
	e.t.Helper()
	now := e.in.clock.Now()
	m := &queue.Message{ID: ids.New(now), Tenant: "acme", List: "news", From: "app@acme.test", ReceivedAt: now,
		Recipients: []queue.Recipient{{Index: 0, Address: rcpt}}}
	if err := e.qs.Add(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// delivered records that the recipient's server took m (a 250).
func (e *dsnEnv) delivered(m *queue.Message) {
	e.t.Helper()
	job := queue.Job{MessageID: m.ID, Index: 0, Domain: "example.net", Due: m.ReceivedAt}
	out := queue.Outcome{State: queue.Delivered, Reply: "250 2.0.0 ok", At: e.in.clock.Now()}
	if _, err := e.qs.Record(context.Background(), job, out); err != nil {
		e.t.Fatal(err)
	}
}

// report sends a failed-delivery DSN about m to its VERP return path.
func (e *dsnEnv) report(m *queue.Message, status, diag string) {
	e.t.Helper()
	rcpt := m.Recipients[0].Address
	if err := send(e.c, "", []string{e.verp.Address(m.ID, 0)}, dsnFor(rcpt, "failed", status, diag)); err != nil {
		e.t.Fatalf("DSN about %s: %v", rcpt, err)
	}
}

func (e *dsnEnv) entries(addr string) []suppression.Entry {
	e.t.Helper()
	es, err := e.sup.Lookup(context.Background(), "acme", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

// bounced returns the message.bounced events of message id.
func (e *dsnEnv) bounced(id string) []events.Data {
	e.t.Helper()
	evs, err := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []events.Data
	for _, ev := range evs {
		if ev.Type == events.MessageBounced && ev.Data.MessageID == id {
			out = append(out, ev.Data)
		}
	}
	return out
}

const fullDiag = "552 5.2.2 <pat@example.net>: mailbox full"

// TestSoftBounceReportsEscalate: a DSN saying the mailbox is full is a
// soft bounce: it suppresses nothing, and the same report sent again is
// not a second bounce; the third message's, 72 hours after the first,
// suppresses the address, the entry listing the three. A 5.2.1 (a
// disabled account) suppresses nothing on its own; a 5.1.1 does at once.
func TestSoftBounceReportsEscalate(t *testing.T) {
	e := startDSN(t)
	var ms []*queue.Message
	for i, step := range []time.Duration{0, 36 * time.Hour, 36 * time.Hour} {
		e.in.clock.Add(step)
		m := e.message("pat@example.net")
		ms = append(ms, m)
		e.report(m, "5.2.2", fullDiag)
		if i == 0 {
			e.in.clock.Add(time.Hour)
			e.report(m, "5.2.2", fullDiag) // a resent report
			e.in.clock.Add(-time.Hour)
		}
		if n := len(e.entries("pat@example.net")); i < 2 && n != 0 {
			t.Fatalf("suppressed after %d soft bounce(s)", i+1)
		}
		d := e.bounced(m.ID)
		if len(d) == 0 || d[0].Reason != "mailbox-full" || d[0].BounceType != "soft" || d[0].Channel != "dsn" {
			t.Errorf("bounce %d: events %+v, want message.bounced (soft, mailbox-full, dsn)", i+1, d)
		}
	}
	es := e.entries("pat@example.net")
	if len(es) != 1 || es[0].Reason != suppression.Bounce || es[0].Channel != "dsn" || es[0].Evidence == nil {
		t.Fatalf("after three soft bounces over 72h: %+v, want a bounce entry with evidence", es)
	}
	ev := *es[0].Evidence
	if len(ev) != 3 {
		t.Fatalf("evidence %+v, want the three messages' bounces (the resent report is not one)", ev)
	}
	for i, b := range ev {
		if b.MessageID != ms[i].ID || b.Status != "5.2.2" || b.Reason != "mailbox-full" || b.Channel != "dsn" || b.Diagnostic != fullDiag {
			t.Errorf("evidence %d: %+v", i, b)
		}
	}

	off := e.message("sam@example.net")
	e.report(off, "5.2.1", "550 5.2.1 <sam@example.net>: this account has been disabled")
	if es := e.entries("sam@example.net"); len(es) != 0 {
		t.Errorf("one 5.2.1 report suppressed: %+v", es)
	}
	if d := e.bounced(off.ID); len(d) != 1 || d[0].BounceType != "soft" || d[0].Reason != "suspended" {
		t.Errorf("5.2.1: events %+v, want one soft bounce (suspended)", d)
	}
	gone := e.message("lee@example.net")
	e.report(gone, "5.1.1", "550 5.1.1 <lee@example.net>: Recipient address rejected: User unknown")
	if es := e.entries("lee@example.net"); len(es) != 1 || es[0].Reason != suppression.Bounce || es[0].Evidence != nil {
		t.Errorf("5.1.1: %+v, want a bounce entry at once", es)
	}
	if d := e.bounced(gone.ID); len(d) != 1 || d[0].BounceType != "hard" || d[0].Reason != "user-unknown" {
		t.Errorf("5.1.1: events %+v, want one hard bounce (user-unknown)", d)
	}
}

// TestSoftBounceReportsWithinSpan: three full-mailbox reports within an
// hour do not suppress.
func TestSoftBounceReportsWithinSpan(t *testing.T) {
	e := startDSN(t)
	for range 3 {
		e.report(e.message("pat@example.net"), "5.2.2", fullDiag)
		e.in.clock.Add(20 * time.Minute)
	}
	if es := e.entries("pat@example.net"); len(es) != 0 {
		t.Fatalf("three soft bounces within an hour suppressed: %+v", es)
	}
}

// TestSoftBounceReportsAndDeliveries: a delivery between the soft
// bounces starts the count again; but a message the recipient's server
// took and then bounced in a report was not delivered, and counts.
func TestSoftBounceReportsAndDeliveries(t *testing.T) {
	e := startDSN(t)
	e.report(e.message("pat@example.net"), "5.2.2", fullDiag)
	e.in.clock.Add(36 * time.Hour)
	e.report(e.message("pat@example.net"), "5.2.2", fullDiag)
	e.in.clock.Add(time.Hour)
	e.delivered(e.message("pat@example.net"))
	e.in.clock.Add(35 * time.Hour)
	e.report(e.message("pat@example.net"), "5.2.2", fullDiag)
	if es := e.entries("pat@example.net"); len(es) != 0 {
		t.Fatalf("a delivery between did not reset the count: %+v", es)
	}

	for i := range 3 {
		m := e.message("sam@example.net")
		e.delivered(m) // a 250, and then a report that it bounced
		e.report(m, "5.2.2", "552 5.2.2 <sam@example.net>: mailbox full")
		if es := e.entries("sam@example.net"); i < 2 && len(es) != 0 {
			t.Fatalf("suppressed after %d soft bounce(s)", i+1)
		}
		e.in.clock.Add(36 * time.Hour)
	}
	if es := e.entries("sam@example.net"); len(es) != 1 || es[0].Evidence == nil || len(*es[0].Evidence) != 3 {
		t.Fatalf("three messages taken and then bounced over 72h: %+v, want a bounce entry listing them", es)
	}
}
