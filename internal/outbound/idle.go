package outbound

import (
	"sync"
	"time"
)

// idleCache holds sessions between transactions, per next hop. Connections
// are taken out while in use, so a session is never shared. The cache only
// hands connections around; closing them, which may block on the network,
// is left to the caller, outside the lock.
type idleCache struct {
	max     int
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	hops   map[string][]*conn // oldest first
}

func newIdleCache(max int, timeout time.Duration) *idleCache {
	return &idleCache{max: max, timeout: timeout, hops: make(map[string][]*conn)}
}

// get takes the most recently used live connection to the hop, or returns
// nil. Expired ones are closed on the way.
func (ic *idleCache) get(key string) *conn {
	ic.mu.Lock()
	list := ic.hops[key]
	var cn *conn
	var stale []*conn
	if n := len(list); n > 0 {
		cn, list = list[n-1], list[:n-1]
		if time.Since(cn.idleSince) > ic.timeout {
			// The newest is too old, so are the others.
			stale, cn, list = append(list, cn), nil, nil
		}
	}
	if len(list) == 0 {
		delete(ic.hops, key)
	} else {
		ic.hops[key] = list
	}
	ic.mu.Unlock()

	for _, s := range stale {
		s.close()
	}
	if cn != nil {
		cn.reused = true
	}
	return cn
}

// put caches cn for its hop. It reports false when the cache is closed or
// the hop already has its fill; the caller then closes cn.
func (ic *idleCache) put(cn *conn) bool {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	key := cn.hop.key()
	if ic.closed || len(ic.hops[key]) >= ic.max {
		return false
	}
	cn.idleSince = time.Now()
	ic.hops[key] = append(ic.hops[key], cn)
	return true
}

// expired removes and returns the connections idle for longer than the
// timeout.
func (ic *idleCache) expired() []*conn {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	var out []*conn
	for key, list := range ic.hops {
		i := 0
		for i < len(list) && time.Since(list[i].idleSince) > ic.timeout {
			i++
		}
		out = append(out, list[:i]...)
		if i == len(list) {
			delete(ic.hops, key)
		} else if i > 0 {
			ic.hops[key] = append([]*conn(nil), list[i:]...)
		}
	}
	return out
}

// closeAll empties the cache for good and returns what it held.
func (ic *idleCache) closeAll() []*conn {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	ic.closed = true
	var out []*conn
	for _, list := range ic.hops {
		out = append(out, list...)
	}
	ic.hops = nil
	return out
}
