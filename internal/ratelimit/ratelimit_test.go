package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// clock is the tests' time; it moves only when a test moves it.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)} }
func key(i int) string               { return fmt.Sprintf("key-%d", i) }
func drain(l *Limiter[string], k string) {
	for ok, _ := l.Allow(k); ok; ok, _ = l.Allow(k) {
	}
}

// TestBucket: a key gets its burst at once, then is refused with the wait
// until its next token, and gets that token after the wait.
func TestBucket(t *testing.T) {
	c := newClock()
	l := New[string](0.5, 3, 10, c.now)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait != 2*time.Second {
		t.Fatalf("past the burst: %v, wait %v; want refused, 2s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Error("another key refused")
	}
	c.add(wait)
	if ok, _ := l.Allow("a"); !ok {
		t.Error("refused after the wait")
	}
	c.add(-time.Hour) // the clock steps back: no tokens are taken away
	c.add(time.Hour)
	if ok, _ := l.Allow("a"); ok {
		t.Error("a token appeared from nowhere")
	}
}

// TestFullTableTakesNewcomers: a table full of buckets in use, none of
// them refilled (someone keeping as many keys busy as the table holds),
// still lets a newcomer in, at once and with its whole burst, and never
// holds more than its size. The bucket evicted is the least recently
// used one, which starts full when it comes back; a key in use stays.
func TestFullTableTakesNewcomers(t *testing.T) {
	const size = 1000
	c := newClock()
	l := New[string](0.1, 5, size, c.now)
	for i := range size {
		drain(l, key(i))
	}
	if n := l.Len(); n != size {
		t.Fatalf("%d buckets, want %d", n, size)
	}
	drain(l, key(0)) // now the most recently used: key 1 is the oldest
	for i := range 5 {
		if ok, _ := l.Allow("newcomer"); !ok {
			t.Fatalf("the newcomer's request %d refused by a full table", i)
		}
	}
	if n := l.Len(); n != size {
		t.Errorf("%d buckets after the newcomer, want %d", n, size)
	}
	if ok, _ := l.Allow(key(0)); ok {
		t.Error("the bucket used most recently was evicted: it came back full")
	}
	if ok, _ := l.Allow(key(1)); !ok {
		t.Error("the bucket used least recently was kept, not evicted")
	}
	for i := range 3 * size {
		l.Allow(fmt.Sprintf("flood-%d", i))
		if n := l.Len(); n > size {
			t.Fatalf("%d buckets after %d newcomers, want at most %d", n, i+1, size)
		}
	}
}

// BenchmarkAllowFullTable is the cost of a newcomer at a full table of
// 100,000 buckets: constant, where a scan of the table cost milliseconds.
func BenchmarkAllowFullTable(b *testing.B) {
	c := newClock()
	l := New[string](0.1, 5, 100000, c.now)
	for i := range 100000 {
		drain(l, key(i))
	}
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("new-%d", i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Allow(keys[i&(len(keys)-1)])
	}
}

// TestRefund: a refunded token can be taken again, and refunds never
// fill a bucket past its burst.
func TestRefund(t *testing.T) {
	c := newClock()
	l := New[string](0.001, 2, 10, c.now)
	drain(l, "a")
	l.Refund("a")
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("the refunded token was not there")
	}
	for range 5 {
		l.Refund("a")
	}
	n := 0
	for ok, _ := l.Allow("a"); ok; ok, _ = l.Allow("a") {
		n++
	}
	if n != 2 {
		t.Fatalf("after five refunds %d tokens, want the burst, 2", n)
	}
	l.Refund("unknown") // no bucket: nothing to give back, nothing made
	if l.Len() != 1 {
		t.Fatalf("a refund made a bucket: %d", l.Len())
	}
}
