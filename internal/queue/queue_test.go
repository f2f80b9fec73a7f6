package queue_test

import (
	"context"
	. "github.com/heedmail/heed/internal/queue"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/testsink"
)

type env struct {
	t     *testing.T
	dir   string
	db    *store.DB
	spool *Spool
	sink  *testsink.Sink
	q     *Queue
	store *Records
	opts  Options
}

func newEnv(t *testing.T, reply func(stage, from, rcpt string, attempt int) *smtp.SMTPError) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.sink = testsink.Start(t, testsink.Options{Reply: reply})
	e.open()
	return e
}

func (e *env) open() {
	t := e.t
	db, err := store.Open(filepath.Join(e.dir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.db = db
	e.spool, err = OpenSpool(filepath.Join(e.dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := outbound.New(outbound.Options{Mode: "mx", Hostname: "relay.test", Logger: log,
		Routes: map[string]string{"example.net": e.sink.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	e.store = boltdb.Queue(db)
	e.opts = Options{
		Store: e.store, Spool: e.spool, Transport: tr, Hostname: "relay.test", Logger: log,
		VERP:    VERP{Domain: "bounces.relay.test", Key: []byte("k")},
		Backoff: func(int) time.Duration { return time.Millisecond },
	}
	e.q = New(e.opts)
	e.q.Start()
	t.Cleanup(e.close)
}

func (e *env) close() {
	if e.q == nil {
		return
	}
	e.q.Stop(context.Background())
	if err := store.Check(e.db.Bolt()); err != nil {
		e.t.Errorf("database inconsistent: %v", err)
	}
	e.db.Close()
	e.q = nil
}

// submit spools and enqueues a transactional message as smtpd does.
func (e *env) submit(rcpts ...string) *Message {
	e.t.Helper()
	return e.submitList("transactional", rcpts...)
}

func (e *env) submitList(list string, rcpts ...string) *Message {
	e.t.Helper()
	return e.submitMsg(list, "a@acme.test", rcpts...)
}

// submitFrom submits a transactional message with the given From:.
func (e *env) submitFrom(from string, rcpts ...string) *Message {
	e.t.Helper()
	return e.submitMsg("transactional", from, rcpts...)
}

func (e *env) submitMsg(list, from string, rcpts ...string) *Message {
	e.t.Helper()
	now := time.Now()
	if e.opts.Now != nil {
		now = e.opts.Now()
	}
	m := &Message{ID: ids.New(now), Tenant: "acme", List: list, From: "a@acme.test", HeaderFrom: from, ReceivedAt: now}
	f, err := e.spool.Create(m.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	io.WriteString(f, "From: a@acme.test\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\nMessage-ID: <x@acme.test>\r\n\r\nhello\r\n")
	if err := f.Sync(); err != nil {
		e.t.Fatal(err)
	}
	for i, r := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Index: i, Address: r})
	}
	if err := e.q.Enqueue(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// waitState waits until recipient idx of id reaches state.
func (e *env) waitState(id string, idx int, want State) Recipient {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := e.store.Message(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if r := m.Recipients[idx]; r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("recipient %d of %s is %q, want %q", idx, id, m.Recipients[idx].State, want)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}

func (e *env) eventTypes() []events.Type {
	evs, err := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []events.Type
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func TestDeferredThenDelivered(t *testing.T) {
	e := newEnv(t, func(stage, _, _ string, attempt int) *smtp.SMTPError {
		if stage == "RCPT" && attempt == 1 {
			return testsink.SMTPError(451, "4.7.1", "greylisted, try again")
		}
		return nil
	})
	m := e.submit("pat@example.net")
	r := e.waitState(m.ID, 0, Delivered)
	if r.Attempts != 2 || !strings.HasPrefix(r.LastReply, "250") {
		t.Errorf("recipient = %+v, want delivered on the 2nd attempt", r)
	}
	got := e.eventTypes()
	want := []events.Type{events.MessageAccepted, events.MessageDeferred, events.MessageDelivered}
	if strings.Join(typeStrings(got), ",") != strings.Join(typeStrings(want), ",") {
		t.Errorf("events %v, want %v", got, want)
	}
	if len(e.sink.Messages()) != 1 {
		t.Errorf("sink got %d messages, want 1", len(e.sink.Messages()))
	}
	// The body is removed just after the final outcome is committed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := e.spool.ReadAll(m.ID); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("body still spooled after every recipient is final")
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}

func typeStrings(ts []events.Type) []string {
	var s []string
	for _, t := range ts {
		s = append(s, string(t))
	}
	return s
}

func TestPermanentFailureBounces(t *testing.T) {
	e := newEnv(t, func(stage, _, rcpt string, _ int) *smtp.SMTPError {
		if stage == "RCPT" && rcpt == "gone@example.net" {
			return testsink.SMTPError(550, "5.1.1", "no such user")
		}
		return nil
	})
	m := e.submit("gone@example.net", "pat@example.net")
	r := e.waitState(m.ID, 0, Bounced)
	if r.Attempts != 1 || !strings.Contains(r.LastReply, "550 5.1.1 no such user") {
		t.Errorf("bounced recipient = %+v, want the remote 550 recorded after one attempt", r)
	}
	e.waitState(m.ID, 1, Delivered)
	evs, _ := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 100)
	found := false
	for _, ev := range evs {
		if ev.Type == events.MessageBounced && ev.Data.Recipient == "gone@example.net" && strings.Contains(ev.Data.Reply, "5.1.1") {
			found = true
		}
	}
	if !found {
		t.Errorf("no message.bounced event with the reply in %+v", evs)
	}
}

func TestExpiryBounces(t *testing.T) {
	e := newEnv(t, func(stage, _, _ string, _ int) *smtp.SMTPError {
		if stage == "RCPT" {
			return testsink.SMTPError(451, "4.3.0", "try later")
		}
		return nil
	})
	e.q.Stop(context.Background())
	e.opts.MaxLifetime = time.Millisecond // already expired at the first failure
	e.q = New(e.opts)
	e.q.Start()
	m := e.submit("pat@example.net")
	r := e.waitState(m.ID, 0, Bounced)
	if !strings.Contains(r.LastReply, "5.4.7") || !strings.Contains(r.LastReply, "try later") {
		t.Errorf("reply %q, want 5.4.7 with the last remote reply", r.LastReply)
	}
}

// TestRestartResumes: a message deferred when Heed stops is delivered by the
// next process from the same data directory.
func TestRestartResumes(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	e := newEnv(t, func(stage, _, _ string, _ int) *smtp.SMTPError {
		if stage == "RCPT" && down.Load() {
			return testsink.SMTPError(421, "4.3.2", "shutting down")
		}
		return nil
	})
	m := e.submit("pat@example.net")
	e.waitState(m.ID, 0, Deferred)
	e.close()
	down.Store(false)
	e.open()
	e.waitState(m.ID, 0, Delivered)
	e.sink.Wait(t, 1, 10*time.Second)
}

func TestVERP(t *testing.T) {
	v := VERP{Domain: "bounces.example.com", Key: []byte("secret")}
	id := ids.New(time.Now())
	a := v.Address(id, 7)
	if at := strings.IndexByte(a, '@'); at > 64 {
		t.Errorf("local part of %q is %d octets, over RFC 5321's 64", a, at)
	}
	gotID, idx, err := v.Parse(strings.ToUpper(a[:1]) + a[1:])
	if err != nil || gotID != id || idx != 7 {
		t.Fatalf("Parse(%q) = %q, %d, %v", a, gotID, idx, err)
	}
	forged := []string{
		strings.Replace(a, "-7-", "-8-", 1),
		strings.Replace(a, id, ids.New(time.Now()), 1),
		a[:len(a)-len("@bounces.example.com")] + "@evil.example",
		"b-x-1-abc@bounces.example.com",
		(VERP{Domain: v.Domain, Key: []byte("other")}).Address(id, 7),
	}
	for _, f := range forged {
		if _, _, err := v.Parse(f); err == nil {
			t.Errorf("forged return path %q accepted", f)
		}
	}
}

func TestBackoffSchedule(t *testing.T) {
	if d := Backoff(1); d < 24*time.Second || d > 36*time.Second {
		t.Errorf("first retry after %v, want 30s ± 20%%", d)
	}
	for n := 1; n < 20; n++ {
		if d := Backoff(n); d > 72*time.Minute {
			t.Errorf("retry %d after %v, over an hour plus jitter", n, d)
		}
	}
}
