package admin

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/heedmail/heed/suppression"
	"github.com/labstack/echo/v4"
)

// privacyAddress is the address of the path, decoded once.
func privacyAddress(c echo.Context) (string, error) {
	raw := c.Param("address")
	if c.Request().URL.RawPath != "" {
		var err error
		if raw, err = url.PathUnescape(raw); err != nil {
			return "", invalid("the address in the path is not URL-encoded correctly")
		}
	}
	return raw, nil
}

// exportPrivacy answers a person's access request: everything held about
// the address, in every tenant, as JSON.
func (s *server) exportPrivacy(c echo.Context) error {
	if s.Privacy == nil {
		return notFound("privacy requests are not available")
	}
	addr, err := privacyAddress(c)
	if err != nil {
		return err
	}
	x, err := s.Privacy.Export(c.Request().Context(), addr)
	if errors.Is(err, suppression.ErrInvalid) {
		return invalid("address: %v", err)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, x)
}

// erasePrivacy answers an erasure request: the address is removed from
// everything Heed holds; its suppressions stay in force under a keyed hash.
func (s *server) erasePrivacy(c echo.Context) error {
	if s.Privacy == nil {
		return notFound("privacy requests are not available")
	}
	addr, err := privacyAddress(c)
	if err != nil {
		return err
	}
	e, err := s.Privacy.Erase(c.Request().Context(), addr)
	if errors.Is(err, suppression.ErrInvalid) {
		return invalid("address: %v", err)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}
