package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/txn"
)

// TestProbeBacksOffAndRecovers drives Run through an outage on a fake
// clock: checks every second while the database answers, Down and a
// reason that names no host as soon as a check fails, the wait doubling
// to the cap while it fails, and back to every second once it answers.
func TestProbeBacksOffAndRecovers(t *testing.T) {
	waits := make(chan time.Duration)
	fire := make(chan time.Time)
	results := make(chan error, 1)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	p := New(func(context.Context) error { return <-results }, Options{
		Now: func() time.Time { return now },
		After: func(d time.Duration) <-chan time.Time {
			waits <- d
			return fire
		},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	step := func(want time.Duration, result error) {
		t.Helper()
		if got := <-waits; got != want {
			t.Fatalf("waited %s before a check, want %s", got, want)
		}
		results <- result
		fire <- now
	}
	if p.Down() || p.Err() != nil {
		t.Fatal("a new probe is down; the node has just reached its database")
	}
	refused := fmt.Errorf("postgres: %w: dial tcp 10.0.0.7:5432: connect: connection refused", txn.ErrUnavailable)
	step(time.Second, nil)
	step(time.Second, refused)
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		got := <-waits // the outcome of the check before this wait is recorded
		if !p.Down() {
			t.Fatal("not down after a failed check")
		}
		if got != want {
			t.Fatalf("waited %s, want %s", got, want)
		}
		results <- refused
		fire <- now
	}
	<-waits
	o, down := p.Outage()
	if !down || o.Failures != 5 || !o.Since.Equal(now) {
		t.Fatalf("outage = %+v %v, want 5 failures since %s", o, down, now)
	}
	err := p.Err()
	if err == nil || !strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), "10.0.0.7") {
		t.Fatalf("Err() = %v, want a reason that names no host", err)
	}
	results <- nil // the database is back
	fire <- now
	if got := <-waits; got != time.Second || p.Down() {
		t.Fatalf("after a good check: waits %s, down %v; want every second and up", got, p.Down())
	}
	cancel()
	<-done
}

// TestProbeTimeout: a database that does not answer within the timeout
// is down, and says so.
func TestProbeTimeout(t *testing.T) {
	p := New(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, Options{Timeout: time.Millisecond})
	p.Check(t.Context())
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "no answer within 1ms") {
		t.Fatalf("Err() = %v", err)
	}
	other := New(func(context.Context) error { return errors.New("FATAL: password authentication failed for user heed") }, Options{})
	other.Check(t.Context())
	if err := other.Err(); err == nil || strings.Contains(err.Error(), "heed") && strings.Contains(err.Error(), "user") {
		t.Fatalf("Err() = %v, want a reason that names no user", err)
	}
}

// TestNilProbe: a bbolt node has no probe and is never down.
func TestNilProbe(t *testing.T) {
	var p *Probe
	if p.Down() || p.Err() != nil {
		t.Fatal("a nil probe is down")
	}
}
