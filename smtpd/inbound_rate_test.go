package smtpd

import (
	"net/netip"
	"testing"
	"time"
)

// TestFullClientRateTakesNewcomers: one host walks 100,000 IPv6 /64s
// (cheap to come by) through the inbound listener, each taking its
// bucket's last token; a mail system never seen before must still be let
// in, not told 450, and the table must stay within its bound.
func TestFullClientRateTakesNewcomers(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	r := newClientRate(1, func() time.Time { return now })
	base := netip.MustParseAddr("2001:db8::1").As16()
	for i := range maxRateBuckets {
		a := base
		a[4], a[5], a[6], a[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if !r.allow(netip.AddrFrom16(a)) {
			t.Fatalf("network %d refused", i)
		}
	}
	if !r.allow(netip.MustParseAddr("192.0.2.25")) {
		t.Error("a new mail system is refused by a full table")
	}
	if n := r.buckets.Len(); n > maxRateBuckets {
		t.Errorf("%d buckets, want at most %d", n, maxRateBuckets)
	}
}
