package smtpd

import (
	"net/netip"
	"time"

	"github.com/heedmail/heed/internal/netlimit"
	"github.com/heedmail/heed/internal/ratelimit"
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
//
// The table holds at most maxRateBuckets networks; when full, a newcomer
// takes the least recently used one's place (package ratelimit). So one
// host walking 100,000 of its IPv6 /64s through the listener neither
// shuts out mail systems it has not seen (they get their minute's worth
// at once) nor makes each of them pay for a scan of the table. A network
// evicted that way starts full when it comes back.
type clientRate struct {
	buckets *ratelimit.Limiter[netip.Addr]
}

// maxRateBuckets bounds the memory a flood of addresses can take.
const maxRateBuckets = 100000

func newClientRate(perMinute int, now func() time.Time) *clientRate {
	pm := float64(perMinute)
	return &clientRate{buckets: ratelimit.New[netip.Addr](pm/60, pm, maxRateBuckets, now)}
}

// allow takes a token for the network of addr and reports whether there
// was one.
func (r *clientRate) allow(addr netip.Addr) bool {
	ok, _ := r.buckets.Allow(netlimit.Client(addr))
	return ok
}
