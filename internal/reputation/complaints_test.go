package reputation_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	. "github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/testclock"
	"github.com/heedmail/heed/suppression"
)

// complaintsOn is Complaints over a fresh backend of each kind, its
// suppression list and its rates sharing the one database, as the relay
// builds them (internal/server complaints).
var complaintsOn = []struct {
	name string
	open func(t *testing.T, now func() time.Time) (*Complaints, *Rates, *events.Log)
}{
	{"bbolt", func(t *testing.T, now func() time.Time) (*Complaints, *Rates, *events.Log) {
		db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		sup := boltdb.Suppressions(db, make([]byte, 32), now)
		tx := boltdb.Reputation(db)
		return &Complaints{Store: sup, Service: sup, Tx: tx, Now: now}, NewRates(tx, now), boltdb.Events(db)
	}},
	{"postgres", func(t *testing.T, now func() time.Time) (*Complaints, *Rates, *events.Log) {
		db, err := postgres.Open(context.Background(), postgres.Config{DSN: pgtest.DSN(t), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		b := db.Backend()
		sup := postgres.Suppressions(b, make([]byte, 32), now)
		tx := postgres.Reputation(b)
		return &Complaints{Store: sup, Service: sup, Tx: tx, Now: now}, NewRates(tx, now), postgres.Events(b)
	}},
}

// TestComplaintsCountOnce: an ARF complaint added through Complaints
// suppresses the address, writes recipient.complained and counts one
// complaint in the rate of the message's sending domain, in the hour of
// the complaint; a second report of the same address suppresses nothing
// new and does not count again, nor is the guard touched again; an
// unsubscribe through the same list counts nothing; another tenant's
// complaint counts only for that tenant.
func TestComplaintsCountOnce(t *testing.T) {
	for _, b := range complaintsOn {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := testclock.New(t0)
			c, rates, log := b.open(t, clock.Now)
			var touched []string
			c.Touched = func(tn string) { touched = append(touched, tn) }
			c.Domain = func(_ context.Context, id string) string {
				return map[string]string{"m1": "a.example", "m2": "a.example", "m3": "b.example"}[id]
			}
			add := func(e suppression.Entry) bool {
				t.Helper()
				var also []events.Type
				if e.Reason == suppression.Complaint {
					also = append(also, events.RecipientComplained) // as the inbound listener adds it
				}
				created, err := c.Add(ctx, e, also...)
				if err != nil {
					t.Fatal(err)
				}
				return created
			}
			complaint := func(tenant, addr, msg string) suppression.Entry {
				return suppression.Entry{Tenant: tenant, Address: addr, List: suppression.All,
					Reason: suppression.Complaint, Channel: "arf", MessageID: msg}
			}
			if !add(complaint("acme", "sam@example.net", "m1")) {
				t.Fatal("the first complaint did not add an entry")
			}
			clock.Add(time.Hour)
			if add(complaint("acme", "Sam@example.net", "m2")) { // the same address, reported again
				t.Error("a repeat report added a second entry")
			}
			add(suppression.Entry{Tenant: "acme", Address: "pat@example.net", List: "news",
				Reason: suppression.Unsubscribe, Channel: "one-click", MessageID: "m1"})
			add(complaint("other", "sam@example.net", "m3"))

			rep, err := rates.Report(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if got := rep.Windows[0].Complaints; got != 1 {
				t.Errorf("acme's complaints over 24h: %d, want 1 (a repeat report counts once)", got)
			}
			if len(rep.Domains) != 1 || rep.Domains[0].Domain != "a.example" || rep.Domains[0].Windows[1].Complaints != 1 {
				t.Errorf("acme's complaints per domain: %+v", rep.Domains)
			}
			if other, _ := rates.Report(ctx, "other"); other.Windows[0].Complaints != 1 ||
				len(other.Domains) != 1 || other.Domains[0].Domain != "b.example" {
				t.Errorf("the other tenant's complaints: %+v", other)
			}
			if len(touched) != 2 || touched[0] != "acme" || touched[1] != "other" {
				t.Errorf("the guard heard of %v, want [acme other]", touched)
			}
			n := eventsOf(t, log, "acme", events.RecipientComplained)
			if n != 1 {
				t.Errorf("%d recipient.complained events of acme, want 1", n)
			}
			entries, err := c.Lookup(ctx, "acme", "sam@example.net")
			if err != nil || len(entries) != 1 || entries[0].Reason != suppression.Complaint {
				t.Errorf("acme's suppression of the complainer: %+v %v", entries, err)
			}

			// A day after the first report it has left the 24 h window,
			// not the 7 d one.
			clock.Add(23 * time.Hour)
			rep, _ = rates.Report(ctx, "acme")
			if rep.Windows[0].Complaints != 0 || rep.Windows[1].Complaints != 1 {
				t.Errorf("a day later: %+v", rep.Windows)
			}
		})
	}
}

// TestDSNHardBouncesCountOnce: a hard bounce reported by a DSN (its
// message was counted Final and Delivered at its 250) suppresses the
// address, writes its message.bounced event and counts one hard bounce,
// and no final attempt, in the rate of the message's sending domain, in
// the hour the report arrived, and the guard hears of it; the same report
// again (a replay, an hour later) suppresses nothing new and does not
// count again, nor is the guard touched again; a soft DSN counts nothing,
// even when it escalates to a suppression; another tenant's counts only
// for that tenant.
func TestDSNHardBouncesCountOnce(t *testing.T) {
	for _, b := range complaintsOn {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clock := testclock.New(t0)
			c, rates, log := b.open(t, clock.Now)
			// One soft bounce escalates: that it still counts nothing is
			// the point.
			c.Service.WithSoftBounces(suppression.SoftRule{Limit: 1, Window: 30 * 24 * time.Hour})
			var touched []string
			c.Touched = func(tn string) { touched = append(touched, tn) }
			c.Domain = func(_ context.Context, id string) string {
				return map[string]string{"m1": "a.example", "m2": "a.example", "m3": "b.example"}[id]
			}
			bounce := func(tenant, addr, msg string, hard bool) bool {
				t.Helper()
				ev := &events.Event{Type: events.MessageBounced, Time: clock.Now(), Data: events.Data{
					Tenant: tenant, MessageID: msg, Recipient: addr, Channel: "dsn"}}
				f := suppression.Failure{Tenant: tenant, Address: addr, Hard: hard, SoftBounce: suppression.SoftBounce{
					Time: clock.Now(), MessageID: msg, Status: "5.1.1", Reason: "no-mailbox", Channel: "dsn"}}
				suppressed, err := c.Bounce(ctx, f, ev)
				if err != nil {
					t.Fatal(err)
				}
				return suppressed
			}
			if !bounce("acme", "gone@example.net", "m1", true) {
				t.Fatal("the hard bounce suppressed nothing")
			}
			clock.Add(time.Hour)
			if bounce("acme", "Gone@example.net", "m1", true) { // the same DSN, replayed
				t.Error("a replayed DSN added a second entry")
			}
			if !bounce("acme", "full@example.net", "m2", false) {
				t.Error("the soft bounce did not escalate (SoftRule.Limit 1)")
			}
			bounce("other", "gone@example.net", "m3", true)

			rep, err := rates.Report(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if w := rep.Windows[0]; w.HardBounces != 1 || w.Final != 0 || w.Delivered != 0 || w.Complaints != 0 {
				t.Errorf("acme's counts over 24h: %+v, want 1 hard bounce only (a replay and a soft bounce count nothing)", w.Counts)
			}
			if len(rep.Domains) != 1 || rep.Domains[0].Domain != "a.example" || rep.Domains[0].Windows[1].HardBounces != 1 {
				t.Errorf("acme's hard bounces per domain: %+v", rep.Domains)
			}
			if other, _ := rates.Report(ctx, "other"); other.Windows[0].HardBounces != 1 ||
				len(other.Domains) != 1 || other.Domains[0].Domain != "b.example" {
				t.Errorf("the other tenant's hard bounces: %+v", other)
			}
			if len(touched) != 2 || touched[0] != "acme" || touched[1] != "other" {
				t.Errorf("the guard heard of %v, want [acme other]", touched)
			}
			n := eventsOf(t, log, "acme", events.MessageBounced)
			if n != 3 {
				t.Errorf("%d message.bounced events of acme, want 3 (every report is an event)", n)
			}
			entries, err := c.Lookup(ctx, "acme", "gone@example.net")
			if err != nil || len(entries) != 1 || entries[0].Reason != suppression.Bounce || entries[0].MessageID != "m1" {
				t.Errorf("acme's suppression of the bounced address: %+v %v", entries, err)
			}

			// Counted in the hour the report arrived: a day after it, it
			// has left the 24 h window, not the 7 d one.
			clock.Add(23 * time.Hour)
			rep, _ = rates.Report(ctx, "acme")
			if rep.Windows[0].HardBounces != 0 || rep.Windows[1].HardBounces != 1 {
				t.Errorf("a day later: %+v", rep.Windows)
			}
		})
	}
}

// eventsOf counts tenant's events of type ty in log.
func eventsOf(t *testing.T, log *events.Log, tenant string, ty events.Type) int {
	t.Helper()
	evs, err := log.Events(context.Background(), tenant, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == ty {
			n++
		}
	}
	return n
}
