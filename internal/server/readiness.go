package server

import (
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
