package webhooks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/events"
	. "github.com/heedmail/heed/webhooks"
)

// TestEndpointsPerTenant: endpoints are created, read, changed and deleted
// per tenant; a tenant never reaches another's, and has at most
// MaxEndpoints.
func TestEndpointsPerTenant(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		ctx := context.Background()
		b.endpoint(t, "acme", "main")
		b.endpoint(t, "acme", "audit")
		b.endpoint(t, "other", "main")
		if err := b.store.CreateEndpoint(ctx, &Endpoint{Tenant: "acme", ID: "main"}); !errors.Is(err, ErrExists) {
			t.Errorf("a second main: %v", err)
		}
		eps, err := b.store.Endpoints(ctx, "acme")
		if err != nil || len(eps) != 2 || eps[0].ID != "audit" || eps[1].ID != "main" {
			t.Fatalf("acme's endpoints: %+v, %v", eps, err)
		}
		if all, _ := b.store.Endpoints(ctx, ""); len(all) != 3 {
			t.Errorf("every endpoint: %+v", all)
		}
		if _, err := b.store.Endpoint(ctx, "acme", "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("an unknown endpoint: %v", err)
		}
		ep, err := b.store.UpdateEndpoint(ctx, "other", "main", func(ep *Endpoint) error { ep.URL = "https://other.example/"; return nil })
		if err != nil || ep.URL != "https://other.example/" {
			t.Fatalf("UpdateEndpoint: %+v, %v", ep, err)
		}
		if got, _ := b.store.Endpoint(ctx, "acme", "main"); got.URL != "https://hooks.example/main" {
			t.Errorf("acme's main changed with other's: %+v", got)
		}
		if err := b.store.DeleteEndpoint(ctx, "other", "audit"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting acme's audit as other: %v", err)
		}
		if err := b.store.DeleteEndpoint(ctx, "acme", "audit"); err != nil {
			t.Fatal(err)
		}
		if eps, _ := b.store.Endpoints(ctx, "acme"); len(eps) != 1 {
			t.Errorf("after a delete: %+v", eps)
		}
		for i := range MaxEndpoints + 1 {
			err := b.store.CreateEndpoint(ctx, &Endpoint{Tenant: "busy", ID: fmt.Sprintf("e%02d", i), State: Active})
			if (i < MaxEndpoints) != (err == nil) || err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("endpoint %d: %v", i, err)
			}
		}
	})
}

// TestNewEndpointStartsAtTheNewestEvent: a new endpoint gets what happens
// from its creation on: its cursor is the newest event's.
func TestNewEndpointStartsAtTheNewestEvent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		b.emit(t, "acme", "a@example.com")
		last := b.emit(t, "other", "b@example.com")
		if ep := b.endpoint(t, "acme", "main"); ep.Cursor != last.Seq {
			t.Errorf("cursor %d, want %d", ep.Cursor, last.Seq)
		}
		got, _ := b.store.Endpoint(context.Background(), "acme", "main")
		if got.Cursor != last.Seq {
			t.Errorf("stored cursor %d, want %d", got.Cursor, last.Seq)
		}
	})
}

// TestRetriesAndDeadLetters: a failed attempt is scheduled, due at its
// time; the last failure is a dead letter, listed per tenant and paged;
// a success leaves the schedule; attempts kept are bounded.
func TestRetriesAndDeadLetters(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		ctx := context.Background()
		b.endpoint(t, "acme", "main")
		b.endpoint(t, "other", "main")
		var evs []events.Event
		for i := range 5 {
			evs = append(evs, b.emit(t, "acme", fmt.Sprintf("r%d@example.com", i)))
		}
		oev := b.emit(t, "other", "o@example.com")
		due := t0.Add(time.Minute)
		for _, ev := range evs {
			if err := b.store.Record(ctx, result("main", ev, Retrying, due, "try later")); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := b.store.Scheduled(ctx); n != 5 {
			t.Errorf("Scheduled = %d, want 5", n)
		}
		jobs, next, err := b.store.Due(ctx, t0, 10, nil)
		if err != nil || len(jobs) != 0 || !next.Equal(due) {
			t.Errorf("Due before the time: %+v, next %v, %v", jobs, next, err)
		}
		jobs, _, _ = b.store.Due(ctx, due, 3, nil)
		if len(jobs) != 3 || jobs[0].Tenant != "acme" || jobs[0].Seq != evs[0].Seq || !jobs[0].Due.Equal(due) {
			t.Errorf("Due at the time: %+v", jobs)
		}
		skipped, _, _ := b.store.Due(ctx, due, 10, func(j Job) bool { return j.Seq == evs[0].Seq })
		if len(skipped) != 4 {
			t.Errorf("Due skipping one: %+v", skipped)
		}
		// Two succeed, three fail for good; other's fails too.
		for i, ev := range evs {
			st := Failed
			if i < 2 {
				st = Delivered
			}
			if err := b.store.Record(ctx, result("main", ev, st, time.Time{}, "")); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.store.Record(ctx, result("main", oev, Failed, time.Time{}, "")); err != nil {
			t.Fatal(err)
		}
		if n, _ := b.store.Scheduled(ctx); n != 0 {
			t.Errorf("Scheduled after the last attempts = %d", n)
		}
		d, err := b.store.Delivery(ctx, "acme", "main", evs[0].Seq)
		if err != nil || d.Status != Delivered || len(d.Attempts) != 2 || d.Retries != 1 || d.EventID != evs[0].ID {
			t.Errorf("delivery: %+v, %v", d, err)
		}
		if _, err := b.store.Delivery(ctx, "other", "main", evs[0].Seq); !errors.Is(err, ErrNotFound) {
			t.Errorf("acme's delivery through other: %v", err)
		}
		dl, cur, err := b.store.DeadLetters(ctx, "acme", "", 2)
		if err != nil || len(dl) != 2 || cur == "" || dl[0].Seq != evs[2].Seq {
			t.Fatalf("dead letters, first page: %+v %q %v", dl, cur, err)
		}
		dl, cur, _ = b.store.DeadLetters(ctx, "acme", cur, 2)
		if len(dl) != 1 || cur != "" || dl[0].Seq != evs[4].Seq {
			t.Errorf("dead letters, last page: %+v %q", dl, cur)
		}
		if all, _, _ := b.store.DeadLetters(ctx, "", "", 10); len(all) != 4 {
			t.Errorf("every tenant's dead letters: %d", len(all))
		}
		if _, _, err := b.store.DeadLetters(ctx, "other", cur0(t, b), 10); !errors.Is(err, ErrInvalid) {
			t.Errorf("acme's cursor used by other: %v", err)
		}
		// Listing, newest first, paged.
		ds, cur, err := b.store.Deliveries(ctx, "acme", "main", "", "", 3)
		if err != nil || len(ds) != 3 || ds[0].Seq != evs[4].Seq || cur == "" {
			t.Fatalf("deliveries: %+v %q %v", ds, cur, err)
		}
		ds, cur, _ = b.store.Deliveries(ctx, "acme", "main", "", cur, 3)
		if len(ds) != 2 || ds[1].Seq != evs[0].Seq || cur != "" {
			t.Errorf("deliveries, page 2: %+v %q", ds, cur)
		}
		if ds, _, _ := b.store.Deliveries(ctx, "acme", "main", Delivered, "", 10); len(ds) != 2 {
			t.Errorf("delivered ones: %+v", ds)
		}
		if _, _, err := b.store.Deliveries(ctx, "acme", "nope", "", "", 10); !errors.Is(err, ErrNotFound) {
			t.Errorf("deliveries of no endpoint: %v", err)
		}
		// Attempts are bounded.
		for range 30 {
			if err := b.store.Record(ctx, result("main", evs[1], Delivered, time.Time{}, "")); err != nil {
				t.Fatal(err)
			}
		}
		if d, _ := b.store.Delivery(ctx, "acme", "main", evs[1].Seq); len(d.Attempts) != 20 {
			t.Errorf("%d attempts kept", len(d.Attempts))
		}
	})
}

// cur0 is a dead-letter cursor of acme's.
func cur0(t *testing.T, b *bed) string {
	t.Helper()
	_, cur, err := b.store.DeadLetters(context.Background(), "acme", "", 1)
	if err != nil || cur == "" {
		t.Fatalf("no cursor: %v", err)
	}
	return cur
}

// TestHoldAndReschedule: a retry of a paused endpoint waits at Hold, out
// of Due's way; Reschedule makes it due again; an attempt that began
// before a resend does not settle the resent delivery.
func TestHoldAndReschedule(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		ctx := context.Background()
		b.endpoint(t, "acme", "main")
		ev := b.emit(t, "acme", "h@example.com")
		if _, err := b.store.UpdateEndpoint(ctx, "acme", "main", func(ep *Endpoint) error { ep.State = Paused; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := b.store.Record(ctx, result("main", ev, Retrying, t0.Add(time.Minute), "")); err != nil {
			t.Fatal(err)
		}
		held, err := b.store.Held(ctx, "acme", "main", 10)
		if err != nil || len(held) != 1 || !held[0].Due.Equal(Hold) {
			t.Fatalf("Held: %+v, %v", held, err)
		}
		if jobs, next, _ := b.store.Due(ctx, t0.Add(time.Hour), 10, nil); len(jobs) != 0 || !next.IsZero() {
			t.Errorf("a held delivery is due: %+v, next %v", jobs, next)
		}
		if err := b.store.Reschedule(ctx, "acme", "main", t0); err != nil {
			t.Fatal(err)
		}
		if held, _ := b.store.Held(ctx, "acme", "main", 10); len(held) != 0 {
			t.Errorf("still held: %+v", held)
		}
		if jobs, _, _ := b.store.Due(ctx, t0, 10, nil); len(jobs) != 1 || jobs[0].Seq != ev.Seq {
			t.Errorf("rescheduled: %+v", jobs)
		}
		// A resend while an attempt runs: the resend stands.
		n, err := b.store.Schedule(ctx, "acme", "main", []events.Event{ev}, t0, t0)
		if err != nil || n != 1 {
			t.Fatalf("Schedule = %d, %v", n, err)
		}
		r := result("main", ev, Failed, time.Time{}, "")
		r.Resends = 0 // began before the resend
		if err := b.store.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
		d, _ := b.store.Delivery(ctx, "acme", "main", ev.Seq)
		if d.Status != Pending || d.Resends != 1 {
			t.Errorf("after a stale attempt: %+v", d)
		}
		if dl, _, _ := b.store.DeadLetters(ctx, "acme", "", 10); len(dl) != 0 {
			t.Errorf("a stale attempt made a dead letter: %+v", dl)
		}
		// Schedule takes no event of another tenant, nor an unknown endpoint.
		oev := b.emit(t, "other", "x@example.com")
		if n, _ := b.store.Schedule(ctx, "acme", "main", []events.Event{oev}, t0, t0); n != 0 {
			t.Errorf("scheduled another tenant's event")
		}
		if _, err := b.store.Schedule(ctx, "acme", "nope", []events.Event{ev}, t0, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("Schedule for no endpoint: %v", err)
		}
		if h, _ := b.store.Handled(ctx, "acme", "main", []uint64{ev.Seq, oev.Seq}); !h[ev.Seq] || h[oev.Seq] {
			t.Errorf("Handled: %v", h)
		}
	})
}

// TestDeleteTenantAndEndpoint: deleting an endpoint or a tenant takes its
// deliveries, schedule entries and dead letters, and nothing of others.
func TestDeleteTenantAndEndpoint(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		ctx := context.Background()
		for _, tn := range []string{"acme", "other"} {
			b.endpoint(t, tn, "a")
			b.endpoint(t, tn, "b")
			for i := range 3 {
				ev := b.emit(t, tn, fmt.Sprintf("d%d@example.com", i))
				for _, id := range []string{"a", "b"} {
					st := Retrying
					if i == 0 {
						st = Failed
					}
					if err := b.store.Record(ctx, result(id, ev, st, t0, "")); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := b.store.DeleteEndpoint(ctx, "acme", "b"); err != nil {
			t.Fatal(err)
		}
		if n, _ := b.store.Scheduled(ctx); n != 6 {
			t.Errorf("Scheduled after deleting one endpoint = %d, want 6", n)
		}
		if err := b.store.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if eps, _ := b.store.Endpoints(ctx, "acme"); len(eps) != 0 {
			t.Errorf("acme's endpoints left: %+v", eps)
		}
		if n, _ := b.store.Scheduled(ctx); n != 4 {
			t.Errorf("Scheduled = %d, want other's 4", n)
		}
		if dl, _, _ := b.store.DeadLetters(ctx, "", "", 10); len(dl) != 2 || dl[0].Tenant != "other" {
			t.Errorf("dead letters left: %+v", dl)
		}
		if jobs, _, _ := b.store.Due(ctx, t0, 100, nil); len(jobs) != 4 || jobs[0].Tenant != "other" {
			t.Errorf("due: %+v", jobs)
		}
	})
}

// TestEraseAttempts: an erasure takes the address from every attempt that
// quotes it, in any case, and leaves other deliveries alone.
func TestEraseAttempts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		ctx := context.Background()
		b.endpoint(t, "acme", "main")
		pat := b.emit(t, "acme", "pat@example.net")
		bob := b.emit(t, "acme", "bob@example.net")
		if err := b.store.Record(ctx, result("main", pat, Failed, time.Time{}, "550 no such user <Pat@Example.NET>")); err != nil {
			t.Fatal(err)
		}
		if err := b.store.Record(ctx, result("main", bob, Failed, time.Time{}, "550 no such user <bob@example.net>")); err != nil {
			t.Fatal(err)
		}
		n, err := b.store.Erase(ctx, "pat@example.net")
		if err != nil || n != 1 {
			t.Fatalf("Erase = %d, %v", n, err)
		}
		d, _ := b.store.Delivery(ctx, "acme", "main", pat.Seq)
		if strings.Contains(strings.ToLower(d.Attempts[0].Response), "pat@") || !strings.Contains(d.Attempts[0].Response, events.Erased) {
			t.Errorf("after the erasure: %q", d.Attempts[0].Response)
		}
		if d, _ := b.store.Delivery(ctx, "acme", "main", bob.Seq); !strings.Contains(d.Attempts[0].Response, "bob@example.net") {
			t.Errorf("bob's attempt changed: %q", d.Attempts[0].Response)
		}
		if dl, _, _ := b.store.DeadLetters(ctx, "acme", "", 10); len(dl) != 2 {
			t.Errorf("the erasure lost a dead letter: %+v", dl)
		}
	})
}

// TestPurgeFinished: a purge deletes finished deliveries older than the
// cut-off, with their dead-letter marks, and keeps scheduled ones.
func TestPurgeFinished(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		ctx := context.Background()
		b.endpoint(t, "acme", "main")
		for i, st := range []Status{Delivered, Failed, Retrying} {
			ev := b.emit(t, "acme", fmt.Sprintf("p%d@example.com", i))
			if err := b.store.Record(ctx, result("main", ev, st, t0, "")); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := b.store.Purge(ctx, t0); err != nil || n != 0 {
			t.Errorf("Purge at the attempts' time = %d, %v", n, err)
		}
		if n, err := b.store.Purge(ctx, t0.Add(time.Hour)); err != nil || n != 2 {
			t.Errorf("Purge = %d, %v; want 2", n, err)
		}
		if dl, _, _ := b.store.DeadLetters(ctx, "acme", "", 10); len(dl) != 0 {
			t.Errorf("dead letters after the purge: %+v", dl)
		}
		if ds, _, _ := b.store.Deliveries(ctx, "acme", "main", "", "", 10); len(ds) != 1 || ds[0].Status != Retrying {
			t.Errorf("left: %+v", ds)
		}
	})
}
