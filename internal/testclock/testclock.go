// Package testclock is the clock tests inject where code takes a
// `now func() time.Time`: it stands still until the test moves it, so a
// test of a window, a rate or a retention period waits for nothing.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only by Add. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time; pass c.Now where a clock function is taken.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
