// Package ratelimit keeps a token bucket per key (a client network, an
// opt-out link) in a table of bounded size, for the listeners that answer
// strangers: the public opt-out pages and the inbound SMTP listener.
//
// The table holds at most a fixed number of buckets, so a flood of
// distinct keys cannot take unbounded memory. When it is full, a newcomer
// takes the place of the bucket used least recently, in constant time:
// it is never refused for want of room, and no request pays for a scan
// of the table under the lock. (An earlier design refused newcomers once
// the table was full of buckets that had not refilled, and scanned the
// whole table for idle ones on each newcomer: a tenant that kept 100,000
// of its own links or IPv6 /64s busy locked everyone else out.)
//
// The price of eviction: a bucket that is evicted and then used again
// starts full, as if its key had been idle all along. Only the keys used
// least recently are evicted, so a key held to its rate by a flood of its
// own requests stays in the table; to get its bucket refilled early, a
// client has to push more distinct keys through the table than it holds
// in between two of its own requests, and each of those keys is held to
// its own burst.
package ratelimit

import (
	"container/list"
	"sync"
	"time"
)

// Limiter is a token bucket per key: each bucket holds at most burst
// tokens and refills at rate tokens a second. It is safe for concurrent
// use.
type Limiter[K comparable] struct {
	rate, burst float64
	size        int // the most buckets held
	now         func() time.Time

	mu      sync.Mutex
	buckets map[K]*list.Element // of *bucket[K]
	lru     list.List           // most recently used at the front
}

type bucket[K comparable] struct {
	key    K
	tokens float64
	last   time.Time
}

// New returns a limiter of at most size buckets (at least 1) that refill
// at rate tokens a second (more than 0) up to burst. now is its clock
// (time.Now when nil).
func New[K comparable](rate, burst float64, size int, now func() time.Time) *Limiter[K] {
	if now == nil {
		now = time.Now
	}
	size = max(size, 1)
	return &Limiter[K]{rate: rate, burst: burst, size: size, now: now, buckets: make(map[K]*list.Element)}
}

// Allow takes a token from key's bucket and reports whether there was
// one, and if not, how long until there is.
func (l *Limiter[K]) Allow(key K) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.bucket(key, now)
	// A clock that went back (a test's, or a step of the system's) must
	// not take tokens away.
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// Refund gives back a token Allow took from key's bucket (up to the
// burst): for a limit on failures that must be asked before the outcome
// is known, so that an attempt that succeeds costs nothing.
func (l *Limiter[K]) Refund(key K) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.buckets[key]; ok {
		b := e.Value.(*bucket[K])
		b.tokens = min(l.burst, b.tokens+1)
	}
}

// bucket returns key's bucket, made full when new, and marks it used.
// When the table is full, the least recently used bucket's element is
// given to the newcomer, so a full table costs no allocation either.
func (l *Limiter[K]) bucket(key K, now time.Time) *bucket[K] {
	if e, ok := l.buckets[key]; ok {
		l.lru.MoveToFront(e)
		return e.Value.(*bucket[K])
	}
	if len(l.buckets) < l.size {
		b := &bucket[K]{key: key, tokens: l.burst, last: now}
		l.buckets[key] = l.lru.PushFront(b)
		return b
	}
	e := l.lru.Back()
	b := e.Value.(*bucket[K])
	delete(l.buckets, b.key)
	*b = bucket[K]{key: key, tokens: l.burst, last: now}
	l.buckets[key] = e
	l.lru.MoveToFront(e)
	return b
}

// Len is the number of buckets held.
func (l *Limiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
