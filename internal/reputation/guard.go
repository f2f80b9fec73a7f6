package reputation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/txn"
)

// Scopes of a pause (reputation.pause_scope).
const (
	// ScopeTenant holds and refuses all of a paused tenant's mail.
	ScopeTenant = "tenant"
	// ScopeMarketing holds and refuses only its marketing lists' mail:
	// password resets and receipts still go out.
	ScopeMarketing = "marketing"
)

// ByGuard is State.PausedBy for a pause the guard made.
const ByGuard = "guard"

// Levels are the guard's thresholds (config reputation.*). A rate is
// judged only over a window holding at least its minimum volume, so
// that ten messages cannot trip it.
type Levels struct {
	WarnBounce, PauseBounce       float64
	WarnComplaint, PauseComplaint float64
	// MinFinal is the final attempts, MinDelivered the deliveries, a
	// window needs before its bounce or complaint rate is judged.
	MinFinal, MinDelivered int64
}

// GuardOptions configure a Guard.
type GuardOptions struct {
	Levels Levels
	// Scope is ScopeTenant or ScopeMarketing.
	Scope string
	// AutoResumeAfter resumes a tenant the guard paused this long after
	// the pause (0: only an operator resumes).
	AutoResumeAfter time.Duration
	// Released is called after a resume committed, to let the tenant's
	// held mail go (queue.Records.Release and a kick of the scheduler).
	Released func(ctx context.Context, tenant string)
	// Once, when several nodes share the database, reports whether this
	// node runs the minute's look at the paused tenants (a cluster-wide
	// lease); nil: it does.
	Once   func(ctx context.Context) bool
	Now    func() time.Time
	Logger *slog.Logger
}

// ErrNotPaused is returned by Resume for a tenant that is not paused.
var ErrNotPaused = errors.New("the tenant is not paused")

// Guard judges tenants' rates and keeps who is paused. It keeps the
// paused tenants in memory too, read on every SMTP transaction and every
// delivery attempt; they are loaded at start (Load) and changed only
// through the guard, after the commit of each change, and when another
// node says it changed one (Refresh).
//
// Lifecycle: NewGuard, Load, then Run in a goroutine until its context
// ends; Touch, Paused, Pause and Resume from any goroutine.
type Guard struct {
	tx  txn.Runner[Tx]
	o   GuardOptions
	log *slog.Logger

	mu     sync.RWMutex
	paused map[string]State

	dirtyMu sync.Mutex
	dirty   map[string]bool
	kick    chan struct{}
}

// NewGuard returns the guard over the rows of tx.
func NewGuard(tx txn.Runner[Tx], o GuardOptions) *Guard {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Scope == "" {
		o.Scope = ScopeTenant
	}
	return &Guard{tx: tx, o: o, log: o.Logger, paused: map[string]State{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// Load reads the paused tenants, at start.
func (g *Guard) Load(ctx context.Context) error {
	var ss []State
	err := g.tx.View(ctx, func(tx Tx) error {
		var err error
		ss, err = tx.Reputation().Paused()
		return err
	})
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused = map[string]State{}
	for _, s := range ss {
		g.paused[s.Tenant] = s
	}
	return nil
}

// Refresh reads tenant's state again, after another node paused or
// resumed it, and reports whether it was paused here and no longer is.
func (g *Guard) Refresh(ctx context.Context, tenant string) (resumed bool, err error) {
	var st State
	err = g.tx.View(ctx, func(tx Tx) error {
		st, _, err = tx.Reputation().State(tenant)
		return err
	})
	if err != nil {
		return false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, was := g.paused[tenant]
	if st.Paused {
		st.Tenant = tenant
		g.paused[tenant] = st
	} else {
		delete(g.paused, tenant)
	}
	return was && !st.Paused, nil
}

// Paused returns tenant's state when it is paused.
func (g *Guard) Paused(tenant string) (State, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	s, ok := g.paused[tenant]
	return s, ok
}

// Holds reports whether tenant's mail of a list of that kind is held
// (not delivered) and refused at submission.
func (g *Guard) Holds(tenant string, marketing bool) bool {
	g.mu.RLock()
	n := len(g.paused)
	g.mu.RUnlock()
	if n == 0 {
		return false // the common case, without a map lookup
	}
	_, ok := g.Paused(tenant)
	return ok && (g.o.Scope == ScopeTenant || marketing)
}

// Scope is the configured scope of a pause.
func (g *Guard) Scope() string { return g.o.Scope }

// Levels are the configured thresholds.
func (g *Guard) Levels() Levels { return g.o.Levels }

// Touch says tenant's counts changed; Run judges it soon after. It never
// blocks, so the queue calls it after each commit.
func (g *Guard) Touch(tenant string) {
	g.dirtyMu.Lock()
	g.dirty[tenant] = true
	g.dirtyMu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// judgeEvery spaces the guard's passes: a busy relay touches its tenants
// with every delivery, and a judgement a second late changes nothing.
const judgeEvery = time.Second

// Run judges the touched tenants, and the paused ones for an automatic
// resume once a minute, until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		case <-tick.C:
			if g.o.Once != nil && !g.o.Once(ctx) {
				break // another node looks at them
			}
			g.mu.RLock()
			for t := range g.paused {
				g.dirtyMu.Lock()
				g.dirty[t] = true
				g.dirtyMu.Unlock()
			}
			g.mu.RUnlock()
		}
		g.dirtyMu.Lock()
		todo := g.dirty
		g.dirty = map[string]bool{}
		g.dirtyMu.Unlock()
		for t := range todo {
			if err := g.Evaluate(ctx, t); err != nil && ctx.Err() == nil {
				g.log.Error("reputation: judging a tenant's rates", "tenant", t, "err", err)
			}
		}
		wait := time.NewTimer(judgeEvery)
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-wait.C:
		}
	}
}

// Evaluate judges tenant's rates over the short window now: it warns of
// a rate newly past its warning level, pauses the tenant when a rate is
// past its pause level, and resumes a tenant the guard paused once
// AutoResumeAfter has passed. It writes only when something changes.
func (g *Guard) Evaluate(ctx context.Context, tenant string) error {
	now := g.o.Now().UTC()
	var d decision
	if err := g.tx.View(ctx, func(tx Tx) error {
		var err error
		d, err = g.decide(tx.Reputation(), tenant, now)
		return err
	}); err != nil || !d.changed {
		return err
	}
	err := g.tx.Update(ctx, func(tx Tx) error {
		var err error
		if d, err = g.decide(tx.Reputation(), tenant, now); err != nil || !d.changed {
			return err
		}
		if err := tx.Reputation().PutState(d.state); err != nil {
			return err
		}
		for i := range d.events {
			ev := d.events[i] // the function may run again: append copies
			if err := events.Append(tx.Events(), &ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || !d.changed {
		return err
	}
	g.committed(ctx, d.state, d.resumed)
	for _, ev := range d.events {
		g.log.Warn("reputation: "+string(ev.Type), "tenant", tenant, "reason", ev.Data.Reason)
	}
	return nil
}

// decision is what Evaluate found to change.
type decision struct {
	changed, resumed bool
	state            State
	events           []events.Event
}

// decide judges tenant at now from rows.
func (g *Guard) decide(rows Rows, tenant string, now time.Time) (decision, error) {
	st, _, err := rows.State(tenant)
	if err != nil {
		return decision{}, err
	}
	st.Tenant = tenant
	d := decision{state: st}
	if st.Paused {
		if st.PausedBy == ByGuard && g.o.AutoResumeAfter > 0 && !now.Before(st.PausedAt.Add(g.o.AutoResumeAfter)) {
			d.state = resumed(st, now)
			d.changed, d.resumed = true, true
			d.events = append(d.events, resumeEvent(tenant, now, fmt.Sprintf(
				"resumed automatically after %s (reputation.auto_resume_after)", g.o.AutoResumeAfter)))
		}
		return d, nil
	}
	var since int64
	if !st.ResumedAt.IsZero() {
		since = Hour(st.ResumedAt) + 1
	}
	bs, err := rows.Buckets(tenant, Short.from(Hour(now)))
	if err != nil {
		return decision{}, err
	}
	c := report(tenant, now, bs, since).Windows[0].Counts
	lv := g.o.Levels
	rates := []events.Rate{
		judged("bounce", c.HardBounces, c.Final, c.Final >= lv.MinFinal),
		judged("complaint", c.Complaints, c.Delivered, c.Delivered >= lv.MinDelivered),
	}
	warnAt := map[string]float64{"bounce": lv.WarnBounce, "complaint": lv.WarnComplaint}
	pauseAt := map[string]float64{"bounce": lv.PauseBounce, "complaint": lv.PauseComplaint}
	var warned []string
	for _, r := range rates {
		if r.Of == 0 { // below the minimum volume: not judged
			continue
		}
		switch {
		case !d.state.Paused && pauseAt[r.Metric] > 0 && r.Value >= pauseAt[r.Metric]:
			r.Threshold = pauseAt[r.Metric]
			reason := fmt.Sprintf("%s rate %s over %s (%d of %d) is at or above the pause level %s", r.Metric,
				Percent(r.Value), r.Window, r.Count, r.Of, Percent(r.Threshold))
			d.state.Paused, d.state.PausedAt, d.state.PausedBy = true, now, ByGuard
			d.state.Reason, d.state.Metric = reason, r.Metric
			d.events = append(d.events, events.Event{Type: events.TenantPaused, Time: now,
				Data: events.Data{Tenant: tenant, Reason: reason, Rate: &r}})
			warned = append(warned, r.Metric)
		case r.Value >= warnAt[r.Metric]:
			warned = append(warned, r.Metric)
			if st.warned(r.Metric) {
				continue // once per crossing
			}
			r.Threshold = warnAt[r.Metric]
			d.events = append(d.events, events.Event{Type: events.TenantReputationWarning, Time: now,
				Data: events.Data{Tenant: tenant, Rate: &r, Reason: fmt.Sprintf(
					"%s rate %s over %s (%d of %d) is at or above the warning level %s", r.Metric,
					Percent(r.Value), r.Window, r.Count, r.Of, Percent(r.Threshold))}})
		}
	}
	if !slices.Equal(warned, st.Warned) || d.state.Paused {
		d.state.Warned = warned
		d.changed = true
	}
	return d, nil
}

// judged is the rate count÷of, with Of zero when the volume is too small
// to judge.
func judged(metric string, count, of int64, enough bool) events.Rate {
	r := events.Rate{Metric: metric, Window: Short.Name, Count: count, Of: of, Value: ratio(count, of)}
	if !enough {
		r.Of = 0
	}
	return r
}

// Percent writes a rate as a percentage with the digits it needs.
func Percent(r float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", r*100), "0"), ".") + "%"
}

func resumed(st State, now time.Time) State {
	return State{Tenant: st.Tenant, ResumedAt: now}
}

func resumeEvent(tenant string, now time.Time, reason string) events.Event {
	return events.Event{Type: events.TenantResumed, Time: now, Data: events.Data{Tenant: tenant, Reason: reason}}
}

// committed updates the paused set after a committed change, and lets a
// resumed tenant's mail go.
func (g *Guard) committed(ctx context.Context, st State, wasResumed bool) {
	g.mu.Lock()
	if st.Paused {
		g.paused[st.Tenant] = st
	} else {
		delete(g.paused, st.Tenant)
	}
	g.mu.Unlock()
	if wasResumed && g.o.Released != nil {
		g.o.Released(ctx, st.Tenant)
	}
}

// Pause pauses tenant by hand (by is the operator's audit actor), with a
// tenant.paused event; pausing a paused tenant changes nothing and
// returns its state.
func (g *Guard) Pause(ctx context.Context, tenant, by, reason string) (State, error) {
	now := g.o.Now().UTC()
	var st State
	var changed bool
	err := g.tx.Update(ctx, func(tx Tx) error {
		var err error
		st, _, err = tx.Reputation().State(tenant)
		if err != nil {
			return err
		}
		st.Tenant = tenant
		if changed = !st.Paused; !changed {
			return nil
		}
		st.Paused, st.PausedAt, st.PausedBy, st.Reason, st.Metric = true, now, by, reason, ""
		if err := tx.Reputation().PutState(st); err != nil {
			return err
		}
		return events.Append(tx.Events(), &events.Event{Type: events.TenantPaused, Time: now,
			Data: events.Data{Tenant: tenant, Reason: "paused by the operator: " + reason}})
	})
	if err == nil && changed {
		g.committed(ctx, st, false)
		g.log.Warn("reputation: tenant paused by hand", "tenant", tenant, "by", by, "reason", reason)
	}
	return st, err
}

// Resume resumes a paused tenant (by is the operator's audit actor), with
// a tenant.resumed event, and lets its held mail go; ErrNotPaused when it
// is not paused.
func (g *Guard) Resume(ctx context.Context, tenant, by string) (State, error) {
	now := g.o.Now().UTC()
	var st State
	err := g.tx.Update(ctx, func(tx Tx) error {
		old, _, err := tx.Reputation().State(tenant)
		if err != nil {
			return err
		}
		if !old.Paused {
			return ErrNotPaused
		}
		old.Tenant = tenant
		st = resumed(old, now)
		if err := tx.Reputation().PutState(st); err != nil {
			return err
		}
		ev := resumeEvent(tenant, now, "resumed by the operator")
		return events.Append(tx.Events(), &ev)
	})
	if err == nil {
		g.committed(ctx, st, true)
		g.log.Warn("reputation: tenant resumed", "tenant", tenant, "by", by)
	}
	return st, err
}

// State returns tenant's guard state (the zero State with its Tenant set
// when it has none).
func (g *Guard) State(ctx context.Context, tenant string) (State, error) {
	var st State
	err := g.tx.View(ctx, func(tx Tx) error {
		var err error
		st, _, err = tx.Reputation().State(tenant)
		return err
	})
	st.Tenant = tenant
	return st, err
}

// Refusal is why tenant's mail of a list of that kind is refused at
// submission, for the SMTP reply; false when it is not.
func (g *Guard) Refusal(tenant string, marketing bool) (string, bool) {
	if !g.Holds(tenant, marketing) {
		return "", false
	}
	st, _ := g.Paused(tenant)
	if st.PausedBy == ByGuard {
		return st.Reason, true
	}
	return "paused by the relay's operator (" + st.Reason + ")", true
}
