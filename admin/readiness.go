package admin

import (
	"net/http"

	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// getReadiness is the sender readiness report of one of the tenant's
// domains (package readiness). Another tenant's domain is as unknown as
// one nobody has. Lookups that fail are warnings in the report, never an
// error here: the report is 200 whatever the DNS does.
func (s *server) getReadiness(c echo.Context, t tenant.Tenant) error {
	if s.Readiness == nil {
		return notFound("readiness reports are not available")
	}
	d, err := s.ownDomain(c, t)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	keys, err := s.Tenants.Keys(ctx, d.Name)
	if err != nil {
		return err
	}
	r, err := s.Readiness.Report(ctx, readiness.Subject{Tenant: t, Domain: d.Name, Keys: keys})
	if err != nil {
		return err // the client went away while waiting for a slot
	}
	return c.JSON(http.StatusOK, r)
}
