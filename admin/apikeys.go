package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// apiKeyView is an API key as clients see it: the key itself once, when
// it is made.
type apiKeyView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Access    string    `json:"access"`
	Key       string    `json:"key,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func viewAPIKey(cr tenant.Credential, key string) apiKeyView {
	return apiKeyView{ID: cr.ID, Name: cr.Name, Access: cr.Access, Key: key, CreatedAt: cr.CreatedAt}
}

// createAPIKey issues a key of the tenant: {"access":"read-only" or
// "read-write" (the default),"name"} → 201 with the key, shown once.
func (s *server) createAPIKey(c echo.Context, t tenant.Tenant) error {
	var req struct {
		Access string `json:"access"`
		Name   string `json:"name"`
	}
	if err := decodeJSON(c, &req); err != nil && !errors.Is(err, errEmptyBody) {
		return err
	}
	if req.Access == "" {
		req.Access = tenant.ReadWrite
	}
	if req.Access != tenant.ReadOnly && req.Access != tenant.ReadWrite {
		return invalid("access must be %q or %q", tenant.ReadOnly, tenant.ReadWrite)
	}
	if len(req.Name) > 100 {
		return invalid("name: at most 100 bytes")
	}
	if err := tenant.ValidText(req.Name); err != nil {
		return invalid("name %v", err)
	}
	var (
		cr  tenant.Credential
		key string
	)
	_, err := s.change(c, func(ctx context.Context) (status int, err error) {
		cr, key, err = s.Tenants.CreateAPIKey(ctx, t.ID, req.Access, req.Name)
		return http.StatusCreated, err
	})
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, viewAPIKey(cr, key))
}

func (s *server) listAPIKeys(c echo.Context, t tenant.Tenant) error {
	cs, err := s.Tenants.Credentials(c.Request().Context(), t.ID)
	if err != nil {
		return err
	}
	out := []apiKeyView{}
	for _, cr := range cs {
		if cr.Kind == tenant.KindAPIKey {
			out = append(out, viewAPIKey(cr, ""))
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"api_keys": out})
}

// deleteAPIKey revokes a key: the next request with it is 401.
func (s *server) deleteAPIKey(c echo.Context, t tenant.Tenant) error {
	id := c.Param("id")
	ctx := c.Request().Context()
	cr, err := s.Tenants.APIKey(ctx, id)
	if errors.Is(err, tenant.ErrNotFound) || err == nil && cr.Tenant != t.ID {
		return notFound("tenant %q has no API key %q", t.ID, id)
	}
	if err != nil {
		return err
	}
	if _, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, s.Tenants.DeleteCredential(ctx, t.ID, id)
	}); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
