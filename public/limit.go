package public

import (
	"net/http"
	"strconv"
	"time"

	"github.com/heedmail/heed/internal/netlimit"
	"github.com/heedmail/heed/internal/ratelimit"
)

// limiter is a token bucket per key. The server keeps two: one per client
// address for page views, the page's buttons and bad links (someone
// guessing tokens, a scanner), and one per link for the POSTs that change
// nothing and the undos (a flood of repeats to one link). A POST that
// records an opt-out is never refused by either, however many come from
// one address: Gmail's one-click POSTs for millions of readers come from a
// few addresses, so per-address limits do not apply to one-click at all.
//
// Each table holds at most maxBuckets buckets; when full, a newcomer
// takes the least recently used one's place (package ratelimit), so a
// tenant keeping that many of its own links busy neither locks other
// links out nor makes each newcomer pay for a scan. A bucket evicted that
// way starts full when its key comes back.
type limiter = ratelimit.Limiter[string]

// maxBuckets bounds the memory a flood of addresses or links can take.
const maxBuckets = 100000

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	return ratelimit.New[string](rate, burst, maxBuckets, now)
}

// clientAddr is the peer's IP address, an IPv6 peer's /64 (one host
// holds a whole /64), as every per-client limit counts (netlimit.Client).
// Forwarded headers are not trusted: anyone can send them.
func clientAddr(r *http.Request) string {
	return netlimit.ClientOfString(r.RemoteAddr).String()
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Seconds()+0.999)))
}
