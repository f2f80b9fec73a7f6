package admin

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// AuditRecord is one change made through the API.
type AuditRecord struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Actor is who: "operator:" and the first 8 hex digits of the SHA-256
	// of the operator token, or "api_key:" and the key's id.
	Actor string `json:"actor"`
	// Tenant is the tenant the change concerns ("" for none).
	Tenant string `json:"tenant,omitempty"`
	// Action is the route, as "METHOD /api/v1/tenants/:tenant/...".
	Action string `json:"action"`
	// Target is the request path (the resource changed), an address in it
	// in its normalised form (suppression.Normalize).
	Target string `json:"target"`
	Status int    `json:"status"`
	// RemoteIP is the client's address as the listener saw it.
	RemoteIP string `json:"remote_ip"`
}

// auditTarget is the request path as the audit log keeps it. An address
// in it, a route's :address, is written in its normalised form, whatever
// spelling the client sent (quoted, Unicode or A-label domain, any case,
// percent-encoded): an erasure request for the address finds the record
// by that form (BoltAudit.Erase), and no other spelling of the address is
// ever stored. The address of a privacy request is not kept at all.
func auditTarget(c echo.Context) string {
	prefix, ok := addressRoute(c.Request().URL.Path, c.Path())
	switch {
	case !ok:
		return c.Request().URL.Path
	case strings.HasPrefix(c.Path(), "/api/v1/privacy/"):
		return prefix + events.Erased // the erased address, not in the audit log
	}
	addr, err := pathAddress(c)
	if err != nil {
		return prefix + "[invalid address]" // not kept in any spelling
	}
	return prefix + addr
}

// addressRoute splits path, of a route whose last parameter is :address,
// into what comes before the address (with its slash) and reports true;
// false for another route. The address is all the rest: a local part may
// hold a '/' (decoded from %2F).
func addressRoute(path, route string) (prefix string, ok bool) {
	if !strings.HasSuffix(route, "/:address") {
		return "", false
	}
	n := strings.Count(route, "/")
	segs := strings.SplitN(path, "/", n+1)
	if len(segs) != n+1 {
		return "", false
	}
	return strings.Join(segs[:n], "/") + "/", true
}

// AuditLog keeps the audit records.
type AuditLog interface {
	Append(ctx context.Context, r *AuditRecord) error
	// Records returns up to limit records with Seq > after, oldest first,
	// of one tenant or all ("").
	Records(ctx context.Context, tenant string, after uint64, limit int) ([]AuditRecord, error)
}

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// listAudit reads the audit log, oldest first, after ?after= (a seq); an
// operator may pass ?tenant=, a tenant's key sees its own tenant's only.
func (s *server) listAudit(c echo.Context) error {
	if s.Audit == nil {
		return notFound("the audit log is not available")
	}
	after, err := queryAfter(c, "a record")
	if err != nil {
		return err
	}
	limit, err := queryLimit(c, defaultAuditLimit, maxAuditLimit)
	if err != nil {
		return err
	}
	tid := c.QueryParam("tenant")
	if tid != "" && tenant.ValidID(tid) != nil {
		return invalid("tenant %q is not a tenant id", tid)
	}
	if who := whoIs(c); !who.operator {
		if tid != "" && tid != who.tenant {
			return notFound("no tenant %q", tid)
		}
		tid = who.tenant
	}
	recs, err := s.Audit.Records(c.Request().Context(), tid, after, limit)
	if err != nil {
		return err
	}
	next := after
	if len(recs) > 0 {
		next = recs[len(recs)-1].Seq
	}
	return c.JSON(http.StatusOK, struct {
		Records []AuditRecord `json:"records"`
		Next    string        `json:"next"`
	}{nonNil(recs), strconv.FormatUint(next, 10)})
}
