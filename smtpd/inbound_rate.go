package smtpd

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// clientRate is a token bucket per client network for the inbound
// listener's transactions: each MAIL command takes a token, a bucket
// holds a minute's worth and refills at perMinute a minute. A mail system
// sending its bounces a few a second never meets it; one address pushing
// reports as fast as it can is held to perMinute, and is told to come
// back later (a 4xx), so a real sender it slows down loses nothing.
//
// It counts messages, not connections: the listener's connection cap is
// separate, and a client can start many transactions on one connection.
type clientRate struct {
	perMinute float64
	now       func() time.Time

	mu      sync.Mutex
	buckets map[netip.Prefix]*rateBucket
}

type rateBucket struct {
	tokens float64
	last   time.Time
}

// maxRateBuckets bounds the memory a flood of addresses can take; past
// it, buckets idle long enough to be full again are dropped.
const maxRateBuckets = 100000

func newClientRate(perMinute int, now func() time.Time) *clientRate {
	return &clientRate{perMinute: float64(perMinute), now: now, buckets: make(map[netip.Prefix]*rateBucket)}
}

// allow takes a token for the network of addr and reports whether there
// was one.
func (r *clientRate) allow(addr netip.Addr) bool {
	key := clientNet(addr)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[key]
	if !ok {
		if len(r.buckets) >= maxRateBuckets {
			r.evict(now)
			if len(r.buckets) >= maxRateBuckets {
				// A flood from more networks than we track: newcomers
				// wait (a 4xx loses nothing) until buckets refill.
				return false
			}
		}
		b = &rateBucket{tokens: r.perMinute, last: now}
		r.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(r.perMinute, b.tokens+elapsed.Minutes()*r.perMinute)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict drops the buckets that have refilled: forgetting them changes
// nothing.
func (r *clientRate) evict(now time.Time) {
	for k, b := range r.buckets {
		if now.Sub(b.last) >= time.Minute {
			delete(r.buckets, k)
		}
	}
}

// clientNet is the network one client controls: its IPv4 address, or its
// IPv6 /64 (one host is routinely given a whole /64, so counting single
// IPv6 addresses would count nothing).
func clientNet(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// remoteAddr is the IP address of a connection's peer; the zero Addr
// when it has none (a test's pipe), which then shares one bucket.
func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
