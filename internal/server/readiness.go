package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

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

// readyTimeout bounds the database check of /readyz, below a load
// balancer's usual probe timeout.
const readyTimeout = 2 * time.Second

// readyCheck is /readyz: the relay is started and not stopping, and its
// database answers (PostgreSQL; a bbolt file needs no check). A node whose
// database is unreachable answers every submission 451, so it reports
// not ready until the database is back.
func (r *Relay) readyCheck() error {
	if !r.ready.Load() {
		return errors.New("starting or shutting down")
	}
	if r.st.ping == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := r.st.ping(ctx); err != nil {
		return errors.New("the database is unavailable")
	}
	return nil
}
