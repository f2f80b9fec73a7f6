package public

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// limiter is a token bucket per key. The server keeps two: one per client
// address for page views, the page's buttons and bad links (someone
// guessing tokens, a scanner), and one per link for the POSTs that change
// nothing and the undos (a flood of repeats to one link). A POST that
// records an opt-out is never refused by either, however many come from
// one address: Gmail's one-click POSTs for millions of readers come from a
// few addresses, so per-address limits do not apply to one-click at all.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the memory a flood of addresses can take; past it,
// buckets idle long enough to be full again are dropped.
const maxBuckets = 100000

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{rate: rate, burst: burst, now: now, buckets: make(map[string]*bucket)}
}

// allow takes a token for addr (a client address or a link) and reports whether there was one, and if
// not, how long until there is.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[addr]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.evict(now)
			if len(l.buckets) >= maxBuckets {
				// A flood from more addresses than we track: refuse the
				// newcomers until buckets refill (one-click POSTs that
				// record never come here).
				return false, time.Second
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

func (l *limiter) evict(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) > full {
			delete(l.buckets, k)
		}
	}
}

// clientAddr is the peer's IP address, an IPv6 peer's /64 (one host
// holds a whole /64). Forwarded headers are not trusted: anyone can send
// them.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return host
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Seconds()+0.999)))
}
