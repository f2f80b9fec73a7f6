package tenant

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrNetworkRefused is wrapped by the errors of an ip credential's network
// that parses but may not be registered: too broad for who asks, or
// written with host bits set. The admin API answers 422.
var ErrNetworkRefused = errors.New("network refused")

// NetworkLimit is what ip credentials a caller may register: the
// shortest prefix length allowed for IPv4 and for IPv6, the address
// ranges a network may not overlap, how many ip credentials a tenant may
// hold at most (0 for no limit), and who the limit is for (named in the
// refusal).
type NetworkLimit struct {
	MinBits4, MinBits6 int
	MaxPerTenant       int
	Who                string
	refused            []reserved
}

// The limits on ip credentials. Mail from an ip credential's network needs
// no AUTH and is DKIM-signed as its tenant, on the reputation every tenant
// shares: one tenant's key must not be able to open the relay to the
// internet (0.0.0.0/0), nor claim a network so broad that no other tenant
// can register one. A tenant's API key may name a /24 (IPv4) or a /56
// (IPv6, a site as RIRs assign them) at most, only on the public internet
// (notPublic), and hold MaxTenantIPCredentials of them; an operator may
// name up to a /8 or a /32, enough for any organisation's own address
// space, private and loopback networks too, and never the whole internet.
var (
	TenantNetworks = NetworkLimit{MinBits4: 24, MinBits6: 56, MaxPerTenant: MaxTenantIPCredentials,
		Who: "a tenant's API key", refused: append(append([]reserved{}, neverClients...), notPublic...)}
	OperatorNetworks = NetworkLimit{MinBits4: 8, MinBits6: 32, Who: "anyone", refused: neverClients}
)

// MaxTenantIPCredentials is how many ip credentials a tenant may hold for
// its own API key to register another. Each claims its network from every
// other tenant, and a tenant key that registered /24 after /24 could take
// a provider's ranges from them; a dozen and a half sites is more than a
// tenant sending through one relay has. An operator may register more.
const MaxTenantIPCredentials = 16

// ErrTooManyNetworks is returned when a tenant already holds as many ip
// credentials as the caller's limit allows. The admin API answers 422.
var ErrTooManyNetworks = errors.New("too many ip credentials")

// reserved is a special-purpose address range (RFC 6890 and the IANA
// registries it set up) and what it is.
type reserved struct {
	p    netip.Prefix
	what string
}

func special(p, what string) reserved { return reserved{netip.MustParsePrefix(p), what} }

// neverClients are ranges no TCP client's address is in: a network there
// matches no one, so registering it is a mistake, refused for everyone.
var neverClients = []reserved{
	special("0.0.0.0/8", `"this network", no host's address (RFC 1122 section 3.2.1.3)`),
	special("224.0.0.0/4", "multicast (RFC 5771)"),
	special("240.0.0.0/4", "reserved, with the broadcast address (RFC 1112 section 4)"),
	special("::/128", "the unspecified address (RFC 4291 section 2.5.2)"),
	special("ff00::/8", "multicast (RFC 4291 section 2.7)"),
}

// notPublic are ranges whose addresses are not a host's on the internet:
// the relay's own, a proxy's, a NAT's, a container bridge's. Behind a
// proxy that does not pass on the client's address (a Kubernetes Service
// with externalTrafficPolicy: Cluster, HAProxy without the PROXY
// protocol), every client comes from such an address; a tenant that read
// it from the Received field of its own mail and registered it would have
// the relay open to the internet as that tenant. So a tenant's key may not
// register them; an operator, who knows the network, may. The
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32; RFC 5737, RFC 3849) are allowed: no host has those
// addresses, so no proxy can stand there, and examples use them.
var notPublic = []reserved{
	special("10.0.0.0/8", "private address space (RFC 1918)"),
	special("100.64.0.0/10", "carrier-grade NAT space (RFC 6598)"),
	special("127.0.0.0/8", "loopback (RFC 1122 section 3.2.1.3)"),
	special("169.254.0.0/16", "link-local (RFC 3927)"),
	special("172.16.0.0/12", "private address space (RFC 1918)"),
	special("192.0.0.0/24", "reserved for IETF protocol assignments (RFC 6890)"),
	special("192.168.0.0/16", "private address space (RFC 1918)"),
	special("198.18.0.0/15", "reserved for benchmarking, used for internal networks (RFC 2544)"),
	special("::1/128", "loopback (RFC 4291 section 2.5.3)"),
	special("::/96", "IPv4-compatible, deprecated (RFC 4291 section 2.5.5.1)"),
	special("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
	special("fc00::/7", "unique local addresses (RFC 4193)"),
	special("fe80::/10", "link-local (RFC 4291 section 2.5.6)"),
	special("fec0::/10", "site-local, deprecated (RFC 3879)"),
}

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

// Check refuses a network broader than l allows, or one that overlaps a
// range l refuses.
func (l NetworkLimit) Check(p netip.Prefix) error {
	if err := l.checkBits(p); err != nil {
		return err
	}
	for _, r := range l.refused {
		if !r.p.Overlaps(p) {
			continue
		}
		in := "is in"
		if p.Bits() < r.p.Bits() {
			in = "holds"
		}
		why := "no client connects from such an address"
		if !slices.Contains(neverClients, r) {
			why = fmt.Sprintf("%s may register only networks on the public internet, "+
				"since behind a proxy or NAT every client would come from such an address; "+
				"an operator can register it for you", l.Who)
		}
		return fmt.Errorf("%w: cidr %s %s %s, %s: %s", ErrNetworkRefused, p, in, r.p, r.what, why)
	}
	return nil
}

func (l NetworkLimit) checkBits(p netip.Prefix) error {
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
func broadest(p netip.Prefix) bool { return OperatorNetworks.checkBits(p) != nil }
