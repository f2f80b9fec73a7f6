package tenant

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrNetworkRefused is wrapped by the errors of an ip credential's network
// that parses but may not be registered: too broad for who asks, or
// written with host bits set. The admin API answers 422.
var ErrNetworkRefused = errors.New("network refused")

// NetworkLimit is the broadest network an ip credential may name: the
// shortest prefix length allowed for IPv4 and for IPv6, and who it is for
// (named in the refusal).
type NetworkLimit struct {
	MinBits4, MinBits6 int
	Who                string
}

// The limits on ip credentials. Mail from an ip credential's network needs
// no AUTH and is DKIM-signed as its tenant, on the reputation every tenant
// shares: one tenant's key must not be able to open the relay to the
// internet (0.0.0.0/0), nor claim a network so broad that no other tenant
// can register one. A tenant's API key may name a /24 (IPv4) or a /56
// (IPv6, a site as RIRs assign them) at most; an operator may name up to
// a /8 or a /32, enough for any organisation's own address space, and
// never the whole internet.
var (
	TenantNetworks   = NetworkLimit{MinBits4: 24, MinBits6: 56, Who: "a tenant's API key"}
	OperatorNetworks = NetworkLimit{MinBits4: 8, MinBits6: 32, Who: "anyone"}
)

// mapped is the IPv4-mapped IPv6 range (RFC 4291 section 2.5.5.2).
var mapped = netip.MustParsePrefix("::ffff:0:0/96")

// ParseNetwork reads an ip credential's network, a prefix or a single
// address, in its one canonical form: an IPv4-mapped IPv6 network
// (::ffff:198.51.100.0/120) is the IPv4 network it maps (198.51.100.0/24),
// so that it is compared, stored and matched as IPv4 clients' addresses
// are. A network written with host bits set (203.0.113.7/24) is refused
// rather than widened: whoever wrote it may have meant the one host.
func ParseNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("cidr: %q is not a network (203.0.113.0/24) or an address", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%w: cidr %s has host bits set; write %s for the network or %s for the one address",
			ErrNetworkRefused, p, p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	if p.Addr().Is6() && p.Bits() < mapped.Bits() && p.Overlaps(mapped) {
		// It would hold all of IPv4 and IPv6 addresses besides.
		return netip.Prefix{}, fmt.Errorf("%w: cidr %s holds the whole IPv4 address space", ErrNetworkRefused, p)
	}
	return canonical(p), nil
}

// canonical unmaps an IPv4-mapped network: ::ffff:a.b.c.d/N is
// a.b.c.d/(N-96). Networks stored before ParseNetwork did this are read
// through it too.
func canonical(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= mapped.Bits() {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-mapped.Bits()).Masked()
	}
	return p
}

// Check refuses a network broader than l allows.
func (l NetworkLimit) Check(p netip.Prefix) error {
	min, family := l.MinBits4, "IPv4"
	if p.Addr().Is6() {
		min, family = l.MinBits6, "IPv6"
	}
	if p.Bits() < min {
		return fmt.Errorf("%w: cidr %s is broader than the /%d that %s may register for %s; register smaller networks",
			ErrNetworkRefused, p, min, l.Who, family)
	}
	return nil
}

// broadest reports whether a stored network is broader than any limit
// allows: one registered before the limits existed. It matches no client.
func broadest(p netip.Prefix) bool { return OperatorNetworks.Check(p) != nil }
