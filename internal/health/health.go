// Package health watches whether a node's database answers, so that its
// listeners can refuse new work at once while it does not, instead of
// each connection or request finding out by a failed transaction.
//
// A Probe runs one cheap check (a round trip on a connection of its own)
// every second while the database answers, and backs off while it does
// not, so that a database coming back is not met by every node's checks at
// once. The listeners read its state (Down), which costs an atomic load:
// SMTP answers 421 4.3.2 to new connections, HTTP 503, and /readyz says
// what failed. Nothing acknowledged depends on the probe: a transaction
// that fails still fails on its own (451 4.3.0, 503), whatever the probe
// last saw.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/heedmail/heed/internal/txn"
)

// Options configure a Probe; zero values take the defaults.
type Options struct {
	// Every is the time between checks while the database answers
	// (default 1 s), MaxEvery the longest between checks while it does
	// not: the wait doubles from Every after each failed check up to it
	// (default 4 s).
	Every, MaxEvery time.Duration
	// Timeout bounds one check (default 2 s): a database that does not
	// answer within it is down, whether the network drops packets or the
	// server hangs.
	Timeout time.Duration
	// Now is the clock of Outage.Since (default time.Now); After makes
	// the wait between checks (default time.After). Tests replace both.
	Now    func() time.Time
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger
}

// Outage is what the probe knows of a database that does not answer.
type Outage struct {
	// Since is when the first failed check of this outage ended.
	Since time.Time
	// Reason says what failed, in words safe to show to anyone who can
	// reach /readyz: it names no host, user or address.
	Reason string
	// Failures is the number of failed checks in a row.
	Failures int
}

// Probe checks a database in the background. A nil *Probe is a database
// that needs no check (a bbolt file): it is never down.
//
// Lifecycle: New, then Run in a goroutine until its context ends; Down,
// Outage and Err may be called from any goroutine at any time, also
// before Run.
type Probe struct {
	check  func(context.Context) error
	o      Options
	outage atomic.Pointer[Outage] // nil while the database answers
}

// New returns a probe of check, which reports whether the database
// answers. The database is taken to answer until a check says otherwise:
// the node has just reached it to start.
func New(check func(context.Context) error, o Options) *Probe {
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.MaxEvery < o.Every {
		o.MaxEvery = max(4*time.Second, o.Every)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Probe{check: check, o: o}
}

// Run checks the database until ctx ends.
func (p *Probe) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.o.After(p.wait()):
		}
		p.Check(ctx)
	}
}

// wait is the time until the next check: Every while the database
// answers, doubled after each failure in a row up to MaxEvery.
func (p *Probe) wait() time.Duration {
	o := p.outage.Load()
	if o == nil {
		return p.o.Every
	}
	d := p.o.Every
	for i := 1; i < o.Failures && d < p.o.MaxEvery; i++ {
		d *= 2
	}
	return min(d, p.o.MaxEvery)
}

// Check runs one check now and records its outcome; Run calls it.
func (p *Probe) Check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	err := p.check(cctx)
	if err != nil && cctx.Err() != nil {
		// The driver's error for a check cut short varies (an i/o
		// timeout, a cancelled query); the cause is the deadline.
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	cancel()
	if ctx.Err() != nil {
		return // shutting down: not the database's fault
	}
	prev := p.outage.Load()
	if err == nil {
		if prev != nil {
			p.outage.Store(nil)
			p.o.Logger.Info("health: the database answers again", "down_for", p.o.Now().Sub(prev.Since).Round(time.Millisecond).String(), "failed_checks", prev.Failures)
		}
		return
	}
	next := &Outage{Since: p.o.Now(), Reason: p.reason(err), Failures: 1}
	if prev != nil {
		next.Since, next.Failures = prev.Since, prev.Failures+1
	} else {
		p.o.Logger.Error("health: the database does not answer; refusing new work until it does", "reason", next.Reason, "err", err)
	}
	p.outage.Store(next)
}

// reason puts err in words that reveal nothing of the set-up: the
// driver's errors name hosts and users.
func (p *Probe) reason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", p.o.Timeout)
	case errors.Is(err, txn.ErrUnavailable):
		return "unreachable (connection refused or lost)"
	default:
		return "the check failed (the node's log has the error)"
	}
}

// Down reports whether the last check failed.
func (p *Probe) Down() bool { return p != nil && p.outage.Load() != nil }

// Outage returns the outage in progress, if any.
func (p *Probe) Outage() (Outage, bool) {
	if p == nil {
		return Outage{}, false
	}
	if o := p.outage.Load(); o != nil {
		return *o, true
	}
	return Outage{}, false
}

// Err is nil while the database answers, else a sentence for /readyz
// saying what failed and since when.
func (p *Probe) Err() error {
	o, down := p.Outage()
	if !down {
		return nil
	}
	return fmt.Errorf("the database: %s, since %s (%d checks in a row)", o.Reason, o.Since.UTC().Format(time.RFC3339), o.Failures)
}
