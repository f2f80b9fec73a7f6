package queue_test

import (
	"context"
	"errors"
	. "github.com/heedmail/heed/internal/queue"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testsink"
	"github.com/heedmail/heed/suppression"
)

// clock is a settable time source for the scheduler.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// withCompliance restarts e's queue with the tenant registry, suppression
// list and tokens wired in, as the relay runs it, and returns the stores.
func (e *env) withCompliance(now func() time.Time, backoff time.Duration) (*tenant.Registry, *suppression.Service) {
	e.t.Helper()
	e.q.Stop(context.Background())
	reg := tenant.NewRegistry(boltdb.Tenants(e.db))
	if err := reg.SetSealKey([]byte("0123456789abcdef0123456789abcdef")); err != nil {
		e.t.Fatal(err)
	}
	ctx := context.Background()
	if err := reg.CreateTenant(ctx, tenant.Tenant{ID: "acme", Name: "Acme", PostalAddress: "1 Main St"}); err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := reg.CreateDomain(ctx, "acme", "acme.test"); err != nil {
		e.t.Fatal(err)
	}
	if err := reg.CreateTenant(ctx, tenant.Tenant{ID: "other", Name: "Other", PostalAddress: "2 Main St"}); err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := reg.CreateDomain(ctx, "other", "other.test"); err != nil {
		e.t.Fatal(err)
	}
	sup := boltdb.Suppressions(e.db, []byte("hash key for tests, 32 bytes...."), now).WithSoftBounces(testSoftRule)
	e.store.SuppressHardBounces(sup)
	e.opts.Tenants, e.opts.Suppressions = reg, sup
	e.opts.Unsubscribe = Unsubscribe{
		BaseURL: "https://unsubscribe.relay.test", MailtoDomain: "unsubscribe.relay.test",
		Tokens: suppression.NewKeyring(1, map[byte][]byte{1: []byte("token key for tests, 32 bytes...")}),
	}
	e.opts.Now = now
	e.opts.Backoff = func(int) time.Duration { return backoff }
	e.q = New(e.opts)
	e.q.Start()
	return reg, sup
}

// TestOptOutStopsQueuedMail: a message waiting for a retry when its
// recipient unsubscribes is never delivered; the app gets
// message.suppressed with the reason.
func TestOptOutStopsQueuedMail(t *testing.T) {
	e := newEnv(t, func(stage, _, _ string, attempt int) *smtp.SMTPError {
		if stage == "RCPT" && attempt == 1 {
			return testsink.SMTPError(451, "4.7.1", "greylisted, try again")
		}
		return nil
	})
	clk := &clock{now: time.Now()}
	_, sup := e.withCompliance(clk.Now, time.Hour)
	m := e.submitList("marketing", "pat@example.net")
	e.waitState(m.ID, 0, Deferred)

	_, err := sup.Add(context.Background(), suppression.Entry{
		Tenant: "acme", Address: "Pat@Example.net", List: suppression.All, Reason: suppression.Unsubscribe, Channel: "one-click",
	})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Hour)
	e.q.Kick()
	r := e.waitState(m.ID, 0, Suppressed)
	if r.Reason != "unsubscribe" || r.Attempts != 1 {
		t.Errorf("recipient %+v, want suppressed for unsubscribe after the one failed attempt", r)
	}
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("sink got %d messages after the opt-out, want 0", n)
	}
	evs, _ := boltdb.Events(e.db).Events(context.Background(), "acme", 0, 100)
	last := evs[len(evs)-1]
	if last.Type != events.MessageSuppressed || last.Data.Reason != "unsubscribe" || last.Data.Recipient != "pat@example.net" {
		t.Errorf("last event %+v, want message.suppressed for pat (unsubscribe)", last)
	}
}

// TestMarketingOptOutSparesTransactional: the same opt-out leaves an
// appointment reminder queued for retry alone.
func TestMarketingOptOutSparesTransactional(t *testing.T) {
	e := newEnv(t, func(stage, _, _ string, attempt int) *smtp.SMTPError {
		if stage == "RCPT" && attempt == 1 {
			return testsink.SMTPError(451, "4.7.1", "greylisted, try again")
		}
		return nil
	})
	clk := &clock{now: time.Now()}
	reg, sup := e.withCompliance(clk.Now, time.Hour)
	m := e.submit("pat@example.net")
	e.waitState(m.ID, 0, Deferred)
	for _, scope := range []string{suppression.All, "marketing"} {
		if _, err := sup.Add(context.Background(), suppression.Entry{
			Tenant: "acme", Address: "pat@example.net", List: scope, Reason: suppression.Unsubscribe, Channel: "one-click",
		}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(2 * time.Hour)
	e.q.Kick()
	e.waitState(m.ID, 0, Delivered)
	got := e.sink.Wait(t, 1, 10*time.Second)[0]
	keys, err := reg.Keys(context.Background(), "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	res, err := dkim.Verify(got.Data, func(name string) ([]string, error) {
		for _, k := range keys {
			if k.Name() == name {
				return []string{k.TXT}, nil
			}
		}
		return nil, errors.New("no such record")
	})
	if err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil || res[0].Domain != "acme.test" {
		t.Errorf("signatures %+v, %v; want two valid ones for acme.test", res, err)
	}
}

// TestHardBounceSuppresses: a 5.1.1 at delivery bounces the recipient and
// suppresses the address for every list of the tenant in the same
// commit; the next message to it, even transactional, is not sent. A
// policy 5xx (not about the mailbox) suppresses nothing.
func TestHardBounceSuppresses(t *testing.T) {
	e := newEnv(t, func(stage, _, rcpt string, _ int) *smtp.SMTPError {
		switch {
		case stage == "RCPT" && rcpt == "gone@example.net":
			return testsink.SMTPError(550, "5.1.1", "no such user")
		case stage == "RCPT" && rcpt == "picky@example.net":
			return testsink.SMTPError(550, "5.7.1", "message refused by policy")
		}
		return nil
	})
	clk := &clock{now: time.Now()}
	_, sup := e.withCompliance(clk.Now, time.Hour)
	m := e.submitList("marketing", "gone@example.net", "picky@example.net")
	e.waitState(m.ID, 0, Bounced)
	e.waitState(m.ID, 1, Bounced)
	ctx := context.Background()
	if es, _ := sup.Lookup(ctx, "acme", "gone@example.net"); len(es) != 1 || es[0].Reason != suppression.Bounce ||
		es[0].List != suppression.All || es[0].MessageID != m.ID {
		t.Errorf("entries for the hard bounce: %+v", es)
	}
	if es, _ := sup.Lookup(ctx, "acme", "picky@example.net"); len(es) != 0 {
		t.Errorf("a policy refusal was suppressed: %+v", es)
	}
	next := e.submit("gone@example.net")
	if r := e.waitState(next.ID, 0, Suppressed); r.Reason != "bounce" {
		t.Errorf("next message: %+v", r)
	}
}

// TestUnpreparableCopies: what cannot be composed bounces with a reason,
// what cannot be signed now waits, and nothing reaches the sink unsigned.
func TestUnpreparableCopies(t *testing.T) {
	e := newEnv(t, nil)
	clk := &clock{now: time.Now()}
	reg, _ := e.withCompliance(clk.Now, time.Hour)

	unknownList := e.submitList("no-such-list", "pat@example.net")
	if r := e.waitState(unknownList.ID, 0, Bounced); !strings.Contains(r.LastReply, "5.7.1") {
		t.Errorf("unknown list: %q", r.LastReply)
	}
	// From: a domain another tenant owns: never signed with its keys.
	stolen := e.submitFrom("a@other.test", "pat@example.net")
	if r := e.waitState(stolen.ID, 0, Bounced); !strings.Contains(r.LastReply, "no longer registered") {
		t.Errorf("another tenant's domain: %q", r.LastReply)
	}

	// Keys that do not open under this server key: the copy waits.
	e.q.Stop(context.Background())
	wrong := tenant.NewRegistry(reg.Store)
	wrong.SetSealKey([]byte("not the server key of this database"))
	e.opts.Tenants = wrong
	e.q = New(e.opts)
	e.q.Start()
	waiting := e.submit("pat@example.net")
	r := e.waitState(waiting.ID, 0, Deferred)
	if !strings.HasPrefix(r.LastReply, "451 4.3.0") || strings.Contains(r.LastReply, "server key") {
		t.Errorf("unusable keys: %q, want a 451 with a reference and no internal detail", r.LastReply)
	}
	if n := len(e.sink.Messages()); n != 0 {
		t.Errorf("the sink got %d messages", n)
	}
}
