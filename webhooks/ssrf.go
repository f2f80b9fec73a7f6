package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/idna"
)

// Webhook endpoint URLs are chosen by tenants, so without a guard a tenant
// could make Heed send requests to the loopback interface, the private
// network or a cloud metadata service (server-side request forgery). Checking
// a URL once when it is configured is not enough: its name can later resolve
// somewhere else (DNS rebinding). The guard therefore runs in the dialer's
// Control hook, on the very address the socket is about to connect to, after
// every resolution and before any packet leaves.

// Resolver looks up a host's addresses. net.DefaultResolver fits, queried
// with network "ip".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ErrBlockedAddress is wrapped by every refusal of an address.
var ErrBlockedAddress = errors.New("address not allowed for webhooks")

// maxURLLen bounds endpoint URLs.
const maxURLLen = 2048

type blockedRange struct {
	prefix netip.Prefix
	kind   string
}

// blockedV4 lists the IPv4 ranges a webhook may not reach (IANA IPv4
// Special-Purpose Address Registry, RFC 6890 and later). More specific
// entries come first so that the error names the most precise kind.
var blockedV4 = []blockedRange{
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
}

// blockedV6 lists the IPv6 ranges a webhook may not reach (IANA IPv6
// Special-Purpose Address Registry). Ranges that embed an IPv4 address are
// handled by embeddedV4 before this table is consulted.
var blockedV6 = []blockedRange{
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	globalUnicastV6 = netip.MustParsePrefix("2000::/3")
	compatV4        = netip.MustParsePrefix("::/96")
	nat64           = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour       = netip.MustParsePrefix("2002::/16")
)

// CheckAddr refuses addresses a webhook may not reach: unspecified, loopback,
// private, link-local (including cloud metadata services at 169.254.169.254),
// shared CGNAT space, unique-local, multicast, broadcast and the other
// special-purpose and reserved ranges. IPv6 addresses that carry an IPv4
// address (IPv4-mapped and -compatible, NAT64 64:ff9b::/96, 6to4 2002::/16)
// are judged by the IPv4 address they carry, and IPv6 outside global unicast
// 2000::/3 is refused. It returns nil for public addresses; a refusal wraps
// ErrBlockedAddress and names the address and its kind.
func CheckAddr(a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrBlockedAddress)
	}
	// Prefix.Contains never matches a zoned address: judge it without zone.
	kind := blockedKind(a.WithZone(""))
	if kind == "" {
		return nil
	}
	return fmt.Errorf("%w: %s is %s", ErrBlockedAddress, a, kind)
}

// blockedKind returns why a (without zone) is blocked, or "" if it is not.
func blockedKind(a netip.Addr) string {
	if a.Is4() {
		return lookup(blockedV4, a)
	}
	if v4, how, ok := embeddedV4(a); ok {
		if kind := lookup(blockedV4, v4); kind != "" {
			return fmt.Sprintf("%s %s (%s)", how, v4, kind)
		}
		return ""
	}
	if kind := lookup(blockedV6, a); kind != "" {
		return kind
	}
	if !globalUnicastV6.Contains(a) {
		return "reserved"
	}
	return ""
}

func lookup(table []blockedRange, a netip.Addr) string {
	for _, r := range table {
		if r.prefix.Contains(a) {
			return r.kind
		}
	}
	return ""
}

// embeddedV4 returns the IPv4 address that an IPv6 address stands for, when
// packets to it may end up at that IPv4 address.
func embeddedV4(a netip.Addr) (v4 netip.Addr, how string, ok bool) {
	b := a.As16()
	switch {
	case a.Is4In6():
		return a.Unmap(), "IPv4-mapped", true
	case a == netip.IPv6Unspecified() || a == netip.IPv6Loopback():
		// Inside ::/96 but with meanings of their own.
		return netip.Addr{}, "", false
	case compatV4.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible", true
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64 for", true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4 for", true
	}
	return netip.Addr{}, "", false
}

// DialContext returns a dial function for http.Transport.DialContext. It
// resolves the host with r (nil means net.DefaultResolver; a literal IP needs
// no lookup) and dials the addresses in order, each connect bounded by
// timeout. Unless allowPrivate is true, the dialer's Control function runs
// CheckAddr on the address actually being connected, so that a name which
// resolves, or later rebinds, to an internal address is refused before any
// packet is sent. The error of a refused address wraps ErrBlockedAddress.
func DialContext(r Resolver, allowPrivate bool, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = controlCheck
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var ipNetwork string
		switch network {
		case "tcp":
			ipNetwork = "ip"
		case "tcp4":
			ipNetwork = "ip4"
		case "tcp6":
			ipNetwork = "ip6"
		default:
			return nil, fmt.Errorf("webhook dial %s: unsupported network %q", addr, network)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("webhook dial: %w", err)
		}
		addrs, err := resolve(ctx, r, ipNetwork, host)
		if err != nil {
			return nil, fmt.Errorf("webhook dial %s: %w", addr, err)
		}
		var firstErr, blockedErr error
		for _, a := range addrs {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("webhook dial %s: %w", addr, err)
			}
			conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return conn, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if blockedErr == nil && errors.Is(err, ErrBlockedAddress) {
				blockedErr = err
			}
		}
		// A refused address is the more useful report: it tells the
		// tenant that the endpoint points inside.
		if blockedErr != nil {
			return nil, fmt.Errorf("webhook dial %s: %w", addr, blockedErr)
		}
		return nil, fmt.Errorf("webhook dial %s: %w", addr, firstErr)
	}
}

// resolve returns the addresses of host, which may be a literal IP.
func resolve(ctx context.Context, r Resolver, ipNetwork, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	addrs, err := r.LookupNetIP(ctx, ipNetwork, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no addresses for %s", host)
	}
	return addrs, nil
}

// controlCheck is the net.Dialer Control hook: it runs after the socket is
// created and before connect, with the literal address being connected.
func controlCheck(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse %q", ErrBlockedAddress, address)
	}
	return CheckAddr(ap.Addr())
}

// CheckURL validates a webhook endpoint URL when it is configured: at most
// 2048 bytes, absolute, scheme https (http too when allowPrivate), with a
// host, without userinfo or fragment. When the host is a literal IP address,
// CheckAddr applies unless allowPrivate. It returns the parsed URL; its
// errors are meant for the API user.
func CheckURL(raw string, allowPrivate bool) (*url.URL, error) {
	if len(raw) > maxURLLen {
		return nil, fmt.Errorf("webhook url is %d bytes long, the limit is %d", len(raw), maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("webhook url cannot be parsed: %w", err)
	}
	if !u.IsAbs() || u.Opaque != "" {
		return nil, errors.New("webhook url must be absolute, like https://example.com/hooks")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	case u.Scheme == "http":
		return nil, errors.New("webhook url must use https")
	default:
		return nil, fmt.Errorf("webhook url scheme %q is not supported, use https", u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New("webhook url must not contain a user name or password, authenticate with the webhook signature instead")
	}
	if strings.Contains(raw, "#") {
		return nil, errors.New("webhook url must not contain a fragment (#...)")
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("webhook url must have a host name")
	}
	if allowPrivate {
		return u, nil
	}
	// The name as a resolver will see it: full-width dots and other
	// compatibility forms (127。0。0。1, ⓛocalhost) mapped (UTS #46).
	if ascii, err := idna.Lookup.ToASCII(host); err == nil {
		host = ascii
	} else if _, perr := netip.ParseAddr(host); perr != nil {
		return nil, fmt.Errorf("webhook url host %q is not a valid host name: %v", u.Hostname(), err)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("webhook url host is not a public address: %w", err)
		}
		return u, nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return nil, errors.New("webhook url host must not be localhost")
	}
	// Browsers and some resolvers read a name whose last label is numeric
	// (2130706433, 0x7f.1, 127.1) as an IPv4 address; no public name looks
	// like that, so refuse instead of guessing what it would reach.
	if i := strings.LastIndexByte(name, '.'); isNumericLabel(name[i+1:]) {
		return nil, fmt.Errorf("webhook url host %q looks like an IP address in a non-standard form, write it as a.b.c.d or use a name", host)
	}
	return u, nil
}

// isNumericLabel reports whether label is a decimal, octal or hex number
// as inet_aton would read it.
func isNumericLabel(label string) bool {
	if label == "" {
		return false
	}
	digits := label
	hex := false
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		digits, hex = label[2:], true
		if digits == "" {
			return true
		}
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case c >= '0' && c <= '9':
		case hex && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'):
		default:
			return false
		}
	}
	return true
}
