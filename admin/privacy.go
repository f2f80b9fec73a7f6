package admin

import (
	"net/http"

	"github.com/heedmail/heed/internal/privacy"
	"github.com/labstack/echo/v4"
)

// privacyTarget is the privacy service and the normalised address in the
// path, or the 404 of a relay without the service.
func (s *server) privacyTarget(c echo.Context) (*privacy.Service, string, error) {
	if s.Privacy == nil {
		return nil, "", notFound("privacy requests are not available")
	}
	addr, err := pathAddress(c)
	return s.Privacy, addr, err
}

// exportPrivacy answers a person's access request: everything held about
// the address, in every tenant, as JSON.
func (s *server) exportPrivacy(c echo.Context) error {
	p, addr, err := s.privacyTarget(c)
	if err != nil {
		return err
	}
	x, err := p.Export(c.Request().Context(), addr)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, x)
}

// erasePrivacy answers an erasure request: the address is removed from
// everything Heed holds; its suppressions stay in force under a keyed hash.
func (s *server) erasePrivacy(c echo.Context) error {
	p, addr, err := s.privacyTarget(c)
	if err != nil {
		return err
	}
	// An erasure works in bounded transactions of every store (begin).
	if err := s.begin(c); err != nil {
		return err
	}
	e, err := p.Erase(c.Request().Context(), addr)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}
