package readiness

import (
	"context"
	"errors"
	"net"
	"strings"
)

// NewResolver returns the resolver of the reports: Go's own (PreferGo),
// asking server (host:port) when it is set, else the servers of
// /etc/resolv.conf. server is readiness.dns_server, so an operator can
// check what the internet sees from a host behind a split-horizon DNS, and
// tests can serve their zones on loopback.
func NewResolver(server string) *net.Resolver {
	if server == "" {
		return &net.Resolver{PreferGo: true}
	}
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}
}

// fqdn makes name absolute, so resolv.conf's search list never applies:
// a readiness report is about the name as the internet sees it.
func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// bare is name without its final dot, lower case, for comparisons.
func bare(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// notFound reports an answer that the name, or the record type at it,
// does not exist: RFC 7208 section 4.6.4's "void lookup".
func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// lookupError is err for a check's text, without the resolver's address.
func lookupError(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsTimeout:
			return de.Name + ": timed out"
		case de.IsTemporary:
			return de.Name + ": temporary failure (" + de.Err + ")"
		}
		return de.Name + ": " + de.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the report's time ran out"
	}
	return err.Error()
}

// couldNotLookUp is the warning of a lookup that failed.
func couldNotLookUp(name string, err error) Check {
	return Check{Name: name, Status: Warn, Found: "could not look up: " + lookupError(err),
		Fix: "Try again; if it persists, check that the domain's name servers answer."}
}
