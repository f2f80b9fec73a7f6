package admin

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// AuditRecord is one change made through the API (package audit keeps
// them).
type AuditRecord = audit.Record

// auditTarget is the request path as the audit log keeps it. An address
// in it, a route's :address, is written in its normalised form, whatever
// spelling the client sent (quoted, Unicode or A-label domain, any case,
// percent-encoded): an erasure request for the address finds the record
// by that form (audit.Log.Erase), and no other spelling of the address is
// ever stored. The address of a privacy request is not kept at all.
func auditTarget(c echo.Context) string {
	prefix, ok := audit.AddressRoute(c.Request().URL.Path, c.Path())
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
