package suppression_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/txn"
	. "github.com/heedmail/heed/suppression"
)

var testSoftRule = SoftRule{Limit: 3, Span: 72 * time.Hour, Window: 30 * 24 * time.Hour}

// softFailure is the i-th soft bounce of addr in tenant, at.
func softFailure(tenantID, addr string, i int, at time.Time) Failure {
	return Failure{Tenant: tenantID, Address: addr, SoftBounce: SoftBounce{
		Time: at, MessageID: fmt.Sprintf("msg%d", i), Status: "5.2.2", Reason: "mailbox-full",
		Diagnostic: "552 5.2.2 <" + addr + ">: mailbox full", Channel: "dsn",
	}}
}

// TestSoftBounceEvidenceErased: an entry made by soft bounces keeps their
// evidence on disk (read back after the store is reopened); an erasure
// takes the address out of it, the entry still holds, and the histories
// of the address in every tenant are gone.
func TestSoftBounceEvidenceErased(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		s.WithSoftBounces(testSoftRule)
		ctx := context.Background()
		const pat = "Pat@Example.net"
		for i := range 3 {
			if _, err := s.Bounce(ctx, softFailure("acme", pat, i, testNow.Add(time.Duration(i)*36*time.Hour)), nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Bounce(ctx, softFailure("other", pat, 9, testNow), nil); err != nil {
			t.Fatal(err)
		}
		es, err := s.Lookup(ctx, "acme", pat)
		if err != nil || len(es) != 1 || es[0].Evidence == nil || len(*es[0].Evidence) != 3 {
			t.Fatalf("entries %+v, %v; want one bounce with three bounces of evidence", es, err)
		}
		if b := (*es[0].Evidence)[2]; b.MessageID != "msg2" || !b.Time.Equal(testNow.Add(72*time.Hour)) || b.Channel != "dsn" {
			t.Errorf("last evidence %+v", b)
		}
		if hs, _ := s.SoftBouncesEverywhere(ctx, pat); len(hs) != 1 || hs[0].Tenant != "other" {
			t.Errorf("histories %+v, want other's only (acme's became the entry)", hs)
		}

		n, err := s.Erase(ctx, pat)
		if err != nil || n != 2 {
			t.Fatalf("Erase = %d, %v; want the entry and other's history", n, err)
		}
		es, _ = s.Lookup(ctx, "acme", pat)
		if len(es) != 1 || es[0].Address != "" || es[0].Reason != Bounce {
			t.Fatalf("after erasure: %+v, want the bounce without its address", es)
		}
		for _, b := range *es[0].Evidence {
			if strings.Contains(strings.ToLower(b.Diagnostic), "pat@example.net") || !strings.Contains(b.Diagnostic, "[erased]") {
				t.Errorf("evidence after erasure: %q", b.Diagnostic)
			}
		}
		if hs, _ := s.SoftBouncesEverywhere(ctx, pat); len(hs) != 0 {
			t.Errorf("histories after erasure: %+v", hs)
		}
	})
}

// TestSoftBounceHistoryRetention: a history untouched for the window is
// purged, a younger one kept; deleting a tenant deletes its histories.
func TestSoftBounceHistoryRetention(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		s.WithSoftBounces(testSoftRule)
		ctx := context.Background()
		for i, addr := range []string{"old@example.net", "new@example.net"} {
			if _, err := s.Bounce(ctx, softFailure("acme", addr, i, testNow.Add(time.Duration(i)*48*time.Hour)), nil); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.PurgeSoftBounces(ctx, testNow.Add(testSoftRule.Window+time.Hour)); err != nil || n != 1 {
			t.Fatalf("PurgeSoftBounces = %d, %v; want the older history", n, err)
		}
		if h, _ := s.SoftBounces(ctx, "acme", "old@example.net"); h != nil {
			t.Errorf("old history kept: %+v", h)
		}
		if h, _ := s.SoftBounces(ctx, "acme", "new@example.net"); h == nil || len(h.Bounces) != 1 {
			t.Errorf("new history: %+v", h)
		}
		if err := s.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if h, _ := s.SoftBounces(ctx, "acme", "new@example.net"); h != nil {
			t.Errorf("history of a deleted tenant: %+v", h)
		}
	})
}

// TestSoftBouncesOff: with soft_limit 0 nothing is recorded.
func TestSoftBouncesOff(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		for i := range 5 {
			if _, err := s.Bounce(ctx, softFailure("acme", "pat@example.net", i, testNow.Add(time.Duration(i)*48*time.Hour)), nil); err != nil {
				t.Fatal(err)
			}
		}
		if h, _ := s.SoftBounces(ctx, "acme", "pat@example.net"); h != nil {
			t.Errorf("history with escalation off: %+v", h)
		}
		if es, _ := s.Lookup(ctx, "acme", "pat@example.net"); len(es) != 0 {
			t.Errorf("suppressed with escalation off: %+v", es)
		}
	})
}

// TestSoftBounceRepeatAfterExpiry: a report resent after an older bounce
// aged out of the window leaves the history as it was: one bounce each.
func TestSoftBounceRepeatAfterExpiry(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		s.WithSoftBounces(SoftRule{Limit: 5, Span: testSoftRule.Span, Window: testSoftRule.Window})
		ctx := context.Background()
		for _, b := range []Failure{
			softFailure("acme", "pat@example.net", 0, testNow),
			softFailure("acme", "pat@example.net", 1, testNow.Add(20*24*time.Hour)),
			softFailure("acme", "pat@example.net", 2, testNow.Add(25*24*time.Hour)),
			softFailure("acme", "pat@example.net", 2, testNow.Add(31*24*time.Hour)), // msg2 again; msg0 aged out
		} {
			if _, err := s.Bounce(ctx, b, nil); err != nil {
				t.Fatal(err)
			}
		}
		h, err := s.SoftBounces(ctx, "acme", "pat@example.net")
		if err != nil || h == nil {
			t.Fatalf("history %+v, %v", h, err)
		}
		var got []string
		for _, b := range h.Bounces {
			got = append(got, b.MessageID)
		}
		if strings.Join(got, " ") != "msg0 msg1 msg2" {
			t.Errorf("history holds %v, want msg0 msg1 msg2 as recorded", got)
		}
	})
}

// TestDeliveryNotedInHistory: DeliveredTx, on every backend (PostgreSQL
// writes it without reading: DeliveryNoter). An address with no history
// gets none; the first delivery after bounces keeps them and names the
// message; a second delivery clears them (the first one stood); the
// history's time never goes back.
func TestDeliveryNotedInHistory(t *testing.T) {
	eachRawBackend(t, func(t *testing.T, b backend.Backend) {
		s := New(txn.Narrow(b, func(t backend.Tx) Tx { return t }), testHashKey, func() time.Time { return testNow }).WithSoftBounces(testSoftRule)
		ctx := context.Background()
		deliver := func(addr, msg string, at time.Time) {
			t.Helper()
			if err := b.Update(ctx, func(tx backend.Tx) error { return s.DeliveredTx(tx, "acme", addr, msg, at) }); err != nil {
				t.Fatal(err)
			}
		}
		history := func(addr string) *History {
			t.Helper()
			h, err := s.SoftBounces(ctx, "acme", addr)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		for i := range 2 {
			if _, err := s.Bounce(ctx, softFailure("acme", "pat@example.net", i, testNow.Add(time.Duration(i)*time.Hour)), nil); err != nil {
				t.Fatal(err)
			}
		}
		deliver("sam@example.net", "m-sam", testNow)
		if h := history("sam@example.net"); h != nil {
			t.Errorf("a delivery to an address without bounces made a history: %+v", h)
		}

		deliver("Pat@Example.net", "m-first", testNow.Add(3*time.Hour))
		h := history("pat@example.net")
		if h == nil || len(h.Bounces) != 2 || h.Delivered != "m-first" || !h.Updated.Equal(testNow.Add(3*time.Hour)) {
			t.Fatalf("after the first delivery: %+v; want both bounces, delivered m-first, updated at +3h", h)
		}

		deliver("pat@example.net", "m-second", testNow.Add(2*time.Hour)) // reported late
		h = history("pat@example.net")
		if h == nil || len(h.Bounces) != 0 || h.Delivered != "m-second" || !h.Updated.Equal(testNow.Add(3*time.Hour)) {
			t.Fatalf("after the second delivery: %+v; want no bounces, delivered m-second, still updated at +3h", h)
		}
		if h.Tenant != "acme" {
			t.Errorf("history of tenant %q", h.Tenant)
		}
	})
}

// TestSoftBounceDiagnosticWithNUL: a remote server's reply may hold any
// byte, NUL included, which PostgreSQL's jsonb refuses (the history and
// the evidence are jsonb there): the bounce is recorded all the same, on
// every backend, with the NUL shown as U+FFFD, through to the suppression
// its repetition makes.
func TestSoftBounceDiagnosticWithNUL(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		s.WithSoftBounces(testSoftRule)
		ctx := context.Background()
		for i := range 3 {
			f := softFailure("acme", "pat@example.net", i, testNow.Add(time.Duration(i)*48*time.Hour))
			f.Diagnostic = "552 5.2.2 mailbox\x00full"
			if _, err := s.Bounce(ctx, f, nil); err != nil {
				t.Fatalf("bounce %d: %v", i, err)
			}
			if i == 0 {
				h, err := s.SoftBounces(ctx, "acme", "pat@example.net")
				if err != nil || h == nil || len(h.Bounces) != 1 || h.Bounces[0].Diagnostic != "552 5.2.2 mailbox\uFFFDfull" {
					t.Fatalf("history %+v, %v", h, err)
				}
			}
		}
		es, err := s.Lookup(ctx, "acme", "pat@example.net")
		if err != nil || len(es) != 1 || es[0].Evidence == nil || len(*es[0].Evidence) != 3 {
			t.Fatalf("entries %+v, %v; want one with the three bounces as evidence", es, err)
		}
	})
}
