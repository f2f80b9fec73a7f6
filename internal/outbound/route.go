package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
)

// hop is one next hop: a host name (or IP literal) and a port.
type hop struct {
	name  string
	port  string
	auth  bool         // the smarthost: authenticate if credentials are set
	addrs []net.IPAddr // already resolved (implicit MX), else nil
}

func (h hop) addr() string { return net.JoinHostPort(h.name, h.port) }

// key identifies the hop in the idle cache and the TLS-broken memory. The
// smarthost gets its own key so an authenticated session is never handed to
// a route that happens to point at the same address, nor the reverse.
func (h hop) key() string {
	if h.auth {
		return h.addr() + " auth"
	}
	return h.addr()
}

func parseHop(addr string, auth bool) (hop, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return hop{}, err
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return hop{}, fmt.Errorf("invalid port in %q", addr)
	}
	host = normalizeDomain(host)
	if host == "" {
		return hop{}, fmt.Errorf("missing host in %q", addr)
	}
	return hop{name: host, port: port, auth: auth}, nil
}

// mxHops finds the next hops of a domain in DNS (RFC 5321 section 5.1). On
// failure it returns nil and the Result to report.
func (t *Transport) mxHops(ctx context.Context, domain string) ([]hop, Result) {
	port := strconv.Itoa(t.o.MXPort)
	mxs, err := t.resolver.LookupMX(ctx, domain)
	switch {
	case err != nil && len(mxs) > 0:
		// net.Resolver drops malformed names and reports them alongside
		// the records that remain; those are still good to use.
		t.log.Debug("some MX records ignored", slog.String("domain", domain), slog.Any("err", err))
	case err != nil && !isNotFound(err):
		return nil, temporary("4.4.3", "DNS lookup of MX for %s failed: %v", domain, err)
	}
	// RFC 7505 section 3: a single MX of "." says the domain takes no mail.
	if len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == "") {
		return nil, permanent(556, "5.1.10", "recipient domain has a null MX (RFC 7505)")
	}
	mxs = slices.DeleteFunc(slices.Clone(mxs), func(mx *net.MX) bool {
		return normalizeDomain(mx.Host) == ""
	})
	if len(mxs) == 0 {
		return t.implicitMX(ctx, domain, port)
	}
	// Equal preferences share the load (RFC 5321 section 5.1): shuffle,
	// then a stable sort keeps the shuffled order within a preference.
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	hops := make([]hop, len(mxs))
	for i, mx := range mxs {
		hops[i] = hop{name: normalizeDomain(mx.Host), port: port}
	}
	return hops, Result{}
}

// implicitMX treats the domain itself as its only MX when it has addresses
// but no MX records (RFC 5321 section 5.1).
func (t *Transport) implicitMX(ctx context.Context, domain, port string) ([]hop, Result) {
	addrs, err := t.resolver.LookupIPAddr(ctx, domain)
	switch {
	case err != nil && isNotFound(err), err == nil && len(addrs) == 0:
		return nil, permanent(550, "5.1.2", "recipient domain %s does not exist", domain)
	case err != nil:
		return nil, temporary("4.4.3", "DNS lookup of %s failed: %v", domain, err)
	}
	return []hop{{name: domain, port: port, addrs: addrs}}, Result{}
}

// resolveHop returns the addresses to dial for a hop, in the resolver's
// order.
func (t *Transport) resolveHop(ctx context.Context, h hop) ([]net.IPAddr, error) {
	if h.addrs != nil {
		return h.addrs, nil
	}
	if ip, err := netipParse(h.name); err == nil {
		return []net.IPAddr{ip}, nil
	}
	addrs, err := t.resolver.LookupIPAddr(ctx, h.name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", h.name, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", h.name)
	}
	return addrs, nil
}

// netipParse parses an IP literal, with an optional IPv6 zone.
func netipParse(s string) (net.IPAddr, error) {
	host, zone, _ := strings.Cut(s, "%")
	ip := net.ParseIP(host)
	if ip == nil {
		return net.IPAddr{}, errors.New("not an IP literal")
	}
	return net.IPAddr{IP: ip, Zone: zone}, nil
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}
