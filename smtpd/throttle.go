package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// throttle slows down repeated AUTH failures from one client address: each
// failure beyond the first is answered after a delay that doubles up to a
// cap, and failures are forgotten after a quiet window. A correct password
// is never delayed, so the real user is not locked out by someone guessing
// from the same network; the guesser is held to a few attempts a minute.
type throttle struct {
	base, cap, window time.Duration
	now               func() time.Time

	mu    sync.Mutex
	fails map[netip.Addr]*failure
}

type failure struct {
	n    int
	last time.Time
}

func newThrottle(base, limit, window time.Duration, now func() time.Time) *throttle {
	return &throttle{base: base, cap: limit, window: window, now: now, fails: make(map[netip.Addr]*failure)}
}

// fail records a failure from addr and returns how long to wait before
// answering it.
func (t *throttle) fail(addr netip.Addr) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.fails) > 100000 {
		t.expire(now)
	}
	f := t.fails[addr]
	if f == nil || now.Sub(f.last) > t.window {
		f = &failure{}
		t.fails[addr] = f
	}
	f.n++
	f.last = now
	if f.n <= 1 || t.base <= 0 {
		return 0
	}
	d := t.base << min(f.n-2, 16)
	return min(d, t.cap)
}

func (t *throttle) expire(now time.Time) {
	for a, f := range t.fails {
		if now.Sub(f.last) > t.window {
			delete(t.fails, a)
		}
	}
}
