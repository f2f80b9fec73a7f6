package public

import (
	"fmt"
	"testing"
	"time"
)

// TestFullLimiterTakesNewcomers: a tenant mints as many links as the
// per-link table holds (marketing mail to addresses it controls) and
// keeps every bucket empty; another recipient's undo or repeat must still
// be let in, not answered 429, and the table must stay within its bound.
func TestFullLimiterTakesNewcomers(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	l := newLimiter(0.1, 1, func() time.Time { return now })
	for i := range maxBuckets {
		if ok, _ := l.Allow(fmt.Sprintf("evil\x00news\x00u%d@evil.example", i)); !ok {
			t.Fatalf("fake link %d refused", i)
		}
	}
	if ok, _ := l.Allow("acme\x00marketing\x00pat@example.net"); !ok {
		t.Error("a newcomer is refused by a full table")
	}
	if n := l.Len(); n > maxBuckets {
		t.Errorf("%d buckets, want at most %d", n, maxBuckets)
	}
}
