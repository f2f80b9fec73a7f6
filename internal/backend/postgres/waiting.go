package postgres

import (
	"slices"
	"sync"
)

// waiting is calls waiting for one of a few workers, each of which takes
// up to a maximum of them at a time while any wait: the shape of the
// batched transactions (batch.go) and the gathered reads (reads.go).
// Calls that arrive while every worker is out wait, and go together in
// the next run.
type waiting[C comparable] struct {
	mu      sync.Mutex
	queue   []C
	running int // workers running or about to
}

// add queues c and reports whether the caller must start a worker (go
// work), fewer than workers running.
func (g *waiting[C]) add(c C, workers int) (start bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queue = append(g.queue, c)
	if g.running < workers {
		g.running++
		return true
	}
	return false
}

// remove takes c out of the queue, if no worker has taken it yet.
func (g *waiting[C]) remove(c C) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.queue, c)
	if i < 0 {
		return false
	}
	g.queue = slices.Delete(g.queue, i, i+1)
	return true
}

// work is a worker: it runs up to max calls at a time until none wait.
func (g *waiting[C]) work(max int, run func([]C)) {
	for {
		g.mu.Lock()
		n := min(len(g.queue), max)
		if n == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		calls := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		g.mu.Unlock()
		run(calls)
	}
}
