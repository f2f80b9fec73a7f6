package server

import (
	"errors"
	"net"
	"net/netip"

	"github.com/heedmail/heed/internal/readiness"
)

// readiness is the checker of the sending domains' readiness reports.
func (r *Relay) readiness(resolver *net.Resolver) *readiness.Checker {
	cfg := r.cfg
	var src []netip.Addr
	for _, a := range cfg.Delivery.SourceAddresses {
		if ip, err := netip.ParseAddr(a); err == nil { // validated by config
			src = append(src, ip.Unmap())
		}
	}
	return readiness.New(readiness.Options{
		Resolver: resolver, Hostname: cfg.Hostname, ReturnPathDomain: cfg.ReturnPathDomain,
		MailtoDomain: cfg.Unsubscribe.MailtoDomain, BaseURL: cfg.HTTP.Public.BaseURL,
		SourceAddresses: src, Timeout: cfg.Readiness.Timeout, Logger: r.log,
		ComplaintRate: r.complaintRate,
	})
}

// readyCheck is /readyz: the relay is started and not stopping, and its
// database answered the health probe's last check (PostgreSQL; a bbolt
// file needs none). It reads the probe's state rather than query the
// database, so a load balancer probing every node often costs nothing;
// the state is at most a second old while the database answers. A node
// whose database is unreachable refuses new SMTP connections 421, so it
// reports not ready, saying what failed, until the database is back.
func (r *Relay) readyCheck() error {
	if !r.ready.Load() {
		return errors.New("starting or shutting down")
	}
	return r.health.Err()
}
