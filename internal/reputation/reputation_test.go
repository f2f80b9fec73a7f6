package reputation_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	. "github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/testclock"
	"github.com/heedmail/heed/internal/txn"
)

// The tests of this file are the rates' and the guard's conformance
// suite, run on every storage backend (docs/storage.md).

func TestMain(m *testing.M) { pgtest.Main(m) }

type world struct {
	tx  txn.Runner[Tx]
	log *events.Log
}

var backends = []struct {
	name string
	open func(t *testing.T) world
}{
	{"bbolt", func(t *testing.T) world {
		db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return world{boltdb.Reputation(db), boltdb.Events(db)}
	}},
	{"postgres", func(t *testing.T) world {
		db := backendtest.OpenPostgres(t, 0)
		b := db.Backend()
		return world{postgres.Reputation(b), postgres.Events(b)}
	}},
}

func eachBackend(t *testing.T, fn func(t *testing.T, w world)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

var t0 = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)

// record counts n outcomes of tenant from domain at at.
func record(t *testing.T, w world, tenant, domain string, at time.Time, n int, delivered, hard bool) {
	t.Helper()
	err := w.tx.Update(context.Background(), func(tx Tx) error {
		for range n {
			if err := Count(tx.Reputation(), tenant, domain, at, delivered, hard); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func complain(t *testing.T, w world, tenant, domain string, at time.Time, n int) {
	t.Helper()
	err := w.tx.Update(context.Background(), func(tx Tx) error {
		return tx.Reputation().Add(tenant, domain, Hour(at), Counts{Complaints: int64(n)})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRatesOverWindows: outcomes count in the hour they happen, the 24 h
// window forgets them a day later and the 7 d window a week later, per
// domain and in total, and another tenant's never show.
func TestRatesOverWindows(t *testing.T) {
	eachBackend(t, func(t *testing.T, w world) {
		clock := testclock.New(t0)
		rates := NewRates(w.tx, clock.Now)
		ctx := context.Background()
		record(t, w, "acme", "a.example", t0.Add(-3*24*time.Hour), 50, false, true) // 3 days ago: long window only
		record(t, w, "acme", "a.example", t0, 90, true, false)
		record(t, w, "acme", "a.example", t0, 10, false, true)
		record(t, w, "acme", "b.example", t0.Add(-time.Hour), 100, true, false)
		complain(t, w, "acme", "b.example", t0, 3)
		record(t, w, "other", "a.example", t0, 1000, false, true)

		rep, err := rates.Report(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		short, long := rep.Windows[0], rep.Windows[1]
		if short.Window != "24h" || short.Final != 200 || short.HardBounces != 10 || short.Delivered != 190 || short.Complaints != 3 {
			t.Errorf("24h window: %+v", short)
		}
		if long.Window != "7d" || long.Final != 250 || long.HardBounces != 60 {
			t.Errorf("7d window: %+v", long)
		}
		if short.BounceRate != 0.05 {
			t.Errorf("24h bounce rate %v, want 0.05", short.BounceRate)
		}
		if len(rep.Domains) != 2 || rep.Domains[0].Domain != "a.example" || rep.Domains[1].Windows[0].ComplaintRate != 0.03 {
			t.Errorf("per domain: %+v", rep.Domains)
		}

		clock.Add(24 * time.Hour) // t0's hour leaves the 24 h window
		rep, _ = rates.Report(ctx, "acme")
		if rep.Windows[0].Final != 0 || rep.Windows[1].Final != 250 {
			t.Errorf("a day later: %+v", rep.Windows)
		}
		c, win, err := rates.ComplaintRate(ctx, "acme", "b.example")
		if err != nil || c.Complaints != 3 || c.Delivered != 100 || win != 7*24*time.Hour {
			t.Errorf("complaint rate of b.example: %+v %v %v", c, win, err)
		}
		clock.Add(6 * 24 * time.Hour)
		if n, err := rates.Prune(ctx); err != nil || n == 0 {
			t.Errorf("prune a week later: %d %v", n, err)
		}
		rep, _ = rates.Report(ctx, "acme")
		if rep.Windows[1].Final != 0 || len(rep.Domains) != 0 {
			t.Errorf("a week later: %+v", rep)
		}
		rep, _ = rates.Report(ctx, "other")
		if rep.Windows[0].Final != 0 {
			t.Errorf("other tenant after a week: %+v", rep.Windows)
		}
	})
}

// TestDeleteTenant: deleting a tenant deletes its counters of every
// domain and hour and its guard state, and nothing of a tenant whose id
// it begins.
func TestDeleteTenant(t *testing.T) {
	eachBackend(t, func(t *testing.T, w world) {
		clock := testclock.New(t0)
		rates := NewRates(w.tx, clock.Now)
		ctx := context.Background()
		for _, tenant := range []string{"acme", "acmes"} {
			record(t, w, tenant, "a.example", t0, 5, true, false)
			record(t, w, tenant, "b.example", t0.Add(-2*time.Hour), 3, false, true)
			if err := w.tx.Update(ctx, func(tx Tx) error {
				return tx.Reputation().PutState(State{Tenant: tenant, Paused: true, PausedAt: t0, PausedBy: "guard"})
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := rates.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		for tenant, want := range map[string]int64{"acme": 0, "acmes": 8} {
			if rep, err := rates.Report(ctx, tenant); err != nil || rep.Windows[0].Final != want {
				t.Errorf("%s after deleting acme: %+v %v, want %d final attempts", tenant, rep.Windows, err, want)
			}
			err := w.tx.View(ctx, func(tx Tx) error {
				_, ok, err := tx.Reputation().State(tenant)
				if ok != (want != 0) {
					t.Errorf("%s's state kept = %v after deleting acme", tenant, ok)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

var levels = Levels{WarnBounce: 0.05, PauseBounce: 0.10, WarnComplaint: 0.001, PauseComplaint: 0.003, MinFinal: 100, MinDelivered: 1000}

func types(t *testing.T, w world, tenant string) []events.Type {
	t.Helper()
	evs, err := w.log.Events(context.Background(), tenant, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Type
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// TestGuardThresholds: below the minimum volume a 50% bounce rate trips
// nothing; at the warning level one warning goes out however often the
// guard looks; at the pause level the tenant is paused with the figures
// in its event; a resume lets it go and the guard judges only what came
// after it; the state survives a restart (Load).
func TestGuardThresholds(t *testing.T) {
	eachBackend(t, func(t *testing.T, w world) {
		ctx := context.Background()
		clock := testclock.New(t0)
		var released []string
		g := NewGuard(w.tx, GuardOptions{Levels: levels, Now: clock.Now,
			Released: func(_ context.Context, tn string) { released = append(released, tn) }})
		record(t, w, "acme", "a.example", t0, 49, true, false)
		record(t, w, "acme", "a.example", t0, 50, false, true) // 99 final, 50% bounced: below the volume
		if err := g.Evaluate(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if ty := types(t, w, "acme"); len(ty) != 0 {
			t.Fatalf("below the minimum volume: %v", ty)
		}
		// 1,000 final, 50 + 0 hard: 5%, the warning level.
		record(t, w, "acme", "a.example", t0, 901, true, false)
		for range 3 {
			if err := g.Evaluate(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
		}
		if ty := types(t, w, "acme"); len(ty) != 1 || ty[0] != events.TenantReputationWarning {
			t.Fatalf("at the warning level: %v", ty)
		}
		if g.Holds("acme", false) {
			t.Fatal("held at the warning level")
		}
		record(t, w, "acme", "a.example", t0, 59, false, true) // 109 of 1059: 10.3%
		if err := g.Evaluate(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		evs, _ := w.log.Events(ctx, "acme", 0, 100)
		if len(evs) != 2 || evs[1].Type != events.TenantPaused || evs[1].Data.Rate == nil ||
			evs[1].Data.Rate.Count != 109 || evs[1].Data.Rate.Of != 1059 || evs[1].Data.Rate.Threshold != 0.10 {
			t.Fatalf("at the pause level: %+v", evs)
		}
		if !g.Holds("acme", false) || g.Holds("other", false) {
			t.Fatal("the paused tenant is not held, or another one is")
		}

		g2 := NewGuard(w.tx, GuardOptions{Levels: levels, Now: clock.Now})
		if err := g2.Load(ctx); err != nil || !g2.Holds("acme", true) {
			t.Fatalf("after a restart: held %v, %v", g2.Holds("acme", true), err)
		}

		if _, err := g.Resume(ctx, "acme", "operator:x"); err != nil {
			t.Fatal(err)
		}
		if g.Holds("acme", false) || len(released) != 1 {
			t.Fatalf("after resume: held %v, released %v", g.Holds("acme", false), released)
		}
		if err := g.Evaluate(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if g.Holds("acme", false) {
			t.Fatal("paused again at once by the mail that paused it")
		}
		if _, err := g.Resume(ctx, "acme", "operator:x"); err != ErrNotPaused {
			t.Errorf("resuming a running tenant: %v", err)
		}
		ty := types(t, w, "acme")
		if ty[len(ty)-1] != events.TenantResumed {
			t.Errorf("events: %v", ty)
		}
	})
}

// TestGuardComplaints: the complaint rate pauses at its level once
// 1,000 deliveries are in the window, not before.
func TestGuardComplaints(t *testing.T) {
	eachBackend(t, func(t *testing.T, w world) {
		ctx := context.Background()
		clock := testclock.New(t0)
		g := NewGuard(w.tx, GuardOptions{Levels: levels, Now: clock.Now, Scope: ScopeMarketing})
		record(t, w, "acme", "a.example", t0, 999, true, false)
		complain(t, w, "acme", "a.example", t0, 30) // 3% of 999: below the volume
		g.Evaluate(ctx, "acme")
		if _, paused := g.Paused("acme"); paused {
			t.Fatal("paused below the minimum volume")
		}
		record(t, w, "acme", "a.example", t0, 1, true, false)
		if err := g.Evaluate(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		st, paused := g.Paused("acme")
		if !paused || st.Metric != "complaint" {
			t.Fatalf("not paused at 3%% of 1,000: %+v", st)
		}
		if g.Holds("acme", false) || !g.Holds("acme", true) {
			t.Error("scope marketing: transactional mail held, or marketing not")
		}
	})
}

// TestPauseByHandAndAutoResume: an operator's pause is never resumed
// automatically; the guard's is, after AutoResumeAfter.
func TestPauseByHandAndAutoResume(t *testing.T) {
	eachBackend(t, func(t *testing.T, w world) {
		ctx := context.Background()
		clock := testclock.New(t0)
		g := NewGuard(w.tx, GuardOptions{Levels: levels, Now: clock.Now, AutoResumeAfter: 48 * time.Hour})
		if _, err := g.Pause(ctx, "acme", "operator:x", "list bought"); err != nil {
			t.Fatal(err)
		}
		clock.Add(72 * time.Hour)
		g.Evaluate(ctx, "acme")
		if _, paused := g.Paused("acme"); !paused {
			t.Fatal("an operator's pause resumed automatically")
		}
		g.Resume(ctx, "acme", "operator:x")
		record(t, w, "acme", "a.example", clock.Now().Add(2*time.Hour), 100, false, true)
		clock.Add(2 * time.Hour)
		g.Evaluate(ctx, "acme")
		if st, paused := g.Paused("acme"); !paused || st.PausedBy != ByGuard {
			t.Fatalf("not paused by the guard: %+v", st)
		}
		clock.Add(47 * time.Hour)
		g.Evaluate(ctx, "acme")
		if _, paused := g.Paused("acme"); !paused {
			t.Fatal("resumed before auto_resume_after")
		}
		clock.Add(time.Hour)
		g.Evaluate(ctx, "acme")
		if _, paused := g.Paused("acme"); paused {
			t.Fatal("not resumed after auto_resume_after")
		}
		ty := types(t, w, "acme")
		want := []events.Type{events.TenantPaused, events.TenantResumed, events.TenantPaused, events.TenantResumed}
		if len(ty) != len(want) {
			t.Fatalf("events %v, want %v", ty, want)
		}
	})
}
