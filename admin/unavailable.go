package admin

import (
	"fmt"
	"strings"

	"github.com/heedmail/heed/internal/txn"
	"github.com/labstack/echo/v4"
)

// refuseWhileDown answers the API's requests 503 (problem+json, with
// Retry-After) while the database is known to be down, before any work:
// every route reads or writes it, and a request that waited for a
// connection to a database that drops packets would hold its client for
// the driver's timeout. The probes and the OpenAPI document need no
// database and keep answering, so a load balancer and an operator can
// see why. Console pages are not under /api/ and fail on their own.
func (s *server) refuseWhileDown(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.Unavailable == nil || !strings.HasPrefix(c.Request().URL.Path, "/api/") ||
			c.Path() == "/api/v1/openapi.json" || !s.Unavailable() {
			return next(c)
		}
		c.Response().Header().Set("Retry-After", "5")
		return fmt.Errorf("admin: refused while the database is down: %w", txn.ErrUnavailable)
	}
}
