package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// scoped wraps a tenant-scoped handler: the tenant named in the path must
// exist (404 otherwise) and is passed in.
func (s *server) scoped(h func(echo.Context, tenant.Tenant) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("tenant")
		if tenant.ValidID(id) != nil {
			return notFound("no tenant %q", id)
		}
		t, err := s.Tenants.Tenant(c.Request().Context(), id)
		if errors.Is(err, tenant.ErrNotFound) {
			return notFound("no tenant %q", id)
		}
		if err != nil {
			return err
		}
		return h(c, t)
	}
}

// textFields refuses a tenant's name or postal address that is not text
// (tenant.ValidText), naming the field.
func textFields(name, postal string) error {
	if err := tenant.ValidText(name); err != nil {
		return invalid("name %v", err)
	}
	if err := tenant.ValidText(postal); err != nil {
		return invalid("postal_address %v", err)
	}
	return nil
}

type tenantRequest struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	PostalAddress string `json:"postal_address"`
}

func (s *server) createTenant(c echo.Context) error {
	var req tenantRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := tenant.ValidID(req.ID); err != nil {
		return invalid("id: %v", err)
	}
	t := tenant.Tenant{
		ID: req.ID, Name: strings.TrimSpace(req.Name),
		PostalAddress: strings.TrimSpace(req.PostalAddress), CreatedAt: s.now(),
	}
	if t.Name == "" {
		return invalid("name is required")
	}
	if err := textFields(t.Name, t.PostalAddress); err != nil {
		return err
	}
	_, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusCreated, s.Tenants.CreateTenant(ctx, t)
	})
	if errors.Is(err, tenant.ErrExists) {
		return conflict("tenant %q already exists", t.ID)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tenants/"+t.ID)
	return c.JSON(http.StatusCreated, t)
}

func (s *server) listTenants(c echo.Context) error {
	ts, err := s.Tenants.Tenants(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"tenants": nonNil(ts)})
}

func (s *server) getTenant(c echo.Context, t tenant.Tenant) error {
	return c.JSON(http.StatusOK, t)
}

func (s *server) patchTenant(c echo.Context, t tenant.Tenant) error {
	var req struct {
		Name          *string `json:"name"`
		PostalAddress *string `json:"postal_address"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Name == nil && req.PostalAddress == nil {
		return invalid("send name, postal_address or both")
	}
	if req.Name != nil {
		if t.Name = strings.TrimSpace(*req.Name); t.Name == "" {
			return invalid("name must not be empty")
		}
	}
	if req.PostalAddress != nil {
		t.PostalAddress = strings.TrimSpace(*req.PostalAddress)
	}
	if err := textFields(t.Name, t.PostalAddress); err != nil {
		return err
	}
	if _, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusOK, s.Tenants.UpdateTenant(ctx, t)
	}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

// deleteTenant removes the tenant, then its suppression list, webhook
// endpoints, events and queued messages, so that a tenant created later
// with the same id inherits none of its consumers' data or its endpoints
// (and no mail of the deleted one goes out after its suppression list). A crash in between leaves
// entries no tenant can reach until the id is used again; deleting the
// tenant once more clears them. The audit record (204) commits with the
// registry's deletion; the clean-up, in bounded transactions, comes after
// it, and one that fails is answered and logged as an internal error.
func (s *server) deleteTenant(c echo.Context, t tenant.Tenant) error {
	ctx := c.Request().Context()
	if _, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, s.Tenants.DeleteTenant(ctx, t.ID)
	}); err != nil {
		return err
	}
	if s.Changes == nil {
		changed(c, true) // whatever the clean-up below does
	}
	if s.Suppressions != nil {
		if err := s.Suppressions.DeleteTenant(ctx, t.ID); err != nil {
			return err
		}
	}
	if s.Webhooks != nil {
		if err := s.Webhooks.DeleteTenant(ctx, t.ID); err != nil {
			return err
		}
	}
	if s.Events != nil {
		if err := s.Events.DeleteTenant(ctx, t.ID); err != nil {
			return err
		}
	}
	if s.Messages != nil {
		if err := s.Messages.DeleteTenant(ctx, t.ID); err != nil {
			return err
		}
	}
	return c.NoContent(http.StatusNoContent)
}

// credentialView is a credential as clients see it: never its secret hash.
type credentialView struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Username    string    `json:"username,omitempty"`
	Password    string    `json:"password,omitempty"`
	CIDR        string    `json:"cidr,omitempty"`
	DefaultList string    `json:"default_list"`
	CreatedAt   time.Time `json:"created_at"`
}

func viewCredential(cr tenant.Credential) credentialView {
	v := credentialView{
		ID: cr.ID, Kind: cr.Kind, Username: cr.Username,
		DefaultList: cr.DefaultList, CreatedAt: cr.CreatedAt,
	}
	if cr.Network.IsValid() {
		v.CIDR = cr.Network.String()
	}
	return v
}

type credentialRequest struct {
	Kind        string `json:"kind"`
	CIDR        string `json:"cidr"`
	DefaultList string `json:"default_list"`
}

// check validates req for tenant t before the registry sees it, so that
// what the registry still refuses is a conflict or an internal error.
func (s *server) check(c echo.Context, t tenant.Tenant, req *credentialRequest) error {
	switch req.Kind {
	case "", tenant.KindPassword:
		req.Kind = tenant.KindPassword
		if req.CIDR != "" {
			return invalid("cidr is only for kind %q", tenant.KindIP)
		}
	case tenant.KindIP:
		p, err := tenant.ParseNetwork(req.CIDR)
		if err == nil {
			err = networkLimit(c).Check(p)
		}
		if errors.Is(err, tenant.ErrNetworkRefused) {
			return unprocessable("%v", strings.TrimPrefix(err.Error(), tenant.ErrNetworkRefused.Error()+": "))
		}
		if err != nil {
			return invalid("%v", err)
		}
	default:
		return invalid("kind must be %q or %q", tenant.KindPassword, tenant.KindIP)
	}
	if req.DefaultList == "" {
		return nil
	}
	_, err := s.Tenants.List(c.Request().Context(), t.ID, req.DefaultList)
	if tenant.ValidID(req.DefaultList) != nil || errors.Is(err, tenant.ErrNotFound) {
		return invalid("default_list: tenant %q has no list %q; create it with PUT .../lists/{list} first", t.ID, req.DefaultList)
	}
	return err
}

// networkLimit is the broadest network the caller may give an ip
// credential: a tenant's key may not open the relay to more than a site.
func networkLimit(c echo.Context) tenant.NetworkLimit {
	if whoIs(c).operator {
		return tenant.OperatorNetworks
	}
	return tenant.TenantNetworks
}

func (s *server) createCredential(c echo.Context, t tenant.Tenant) error {
	var req credentialRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.check(c, t, &req); err != nil {
		return err
	}
	var (
		cr       tenant.Credential
		password string
	)
	_, err := s.change(c, func(ctx context.Context) (int, error) {
		var err error
		if req.Kind == tenant.KindIP {
			cr, err = s.Tenants.CreateIPWithin(ctx, networkLimit(c), t.ID, req.CIDR, req.DefaultList)
		} else {
			cr, password, err = s.Tenants.CreatePassword(ctx, t.ID, req.DefaultList)
		}
		return http.StatusCreated, err
	})
	switch {
	case errors.Is(err, tenant.ErrTooManyNetworks):
		return unprocessable("tenant %q already has the %d ip credentials a tenant's API key may register at most; "+
			"delete one it no longer needs, or ask the operator", t.ID, tenant.MaxTenantIPCredentials)
	case errors.Is(err, tenant.ErrExists):
		if err := s.overlapRefused(c, t, req.CIDR); err != nil {
			return err
		}
		return conflict("%s", strings.TrimPrefix(err.Error(), tenant.ErrExists.Error()+": "))
	case err != nil:
		return err
	}
	v := viewCredential(cr)
	v.Password = password
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, v)
}

// overlapRefused logs and audits an ip credential refused because its
// network overlaps another tenant's. The 409 names neither, but whether
// a network is taken is itself an answer: by halving a refused network, a
// key holder finds another tenant's exact network in a few requests.
// Exclusive networks cannot help answering that; what an operator can do
// is see it, so each refusal is logged with the network asked for and a
// count of the tenant's refusals since the start, and is kept in the audit
// log with its 409, though nothing changed: in a transaction of its own
// (the one that checked rolled back), and the 409 is answered only once
// it is stored, so that no probe gets its answer unrecorded.
func (s *server) overlapRefused(c echo.Context, t tenant.Tenant, cidr string) error {
	if p, err := tenant.ParseNetwork(cidr); err == nil {
		cidr = p.String()
	}
	s.refusalsMu.Lock()
	if s.refusals == nil {
		s.refusals = map[string]int{}
	}
	s.refusals[t.ID]++
	n := s.refusals[t.ID]
	s.refusalsMu.Unlock()
	who := whoIs(c)
	s.Logger.Warn("admin: ip credential refused: the network overlaps another tenant's",
		"tenant", t.ID, "cidr", cidr, "actor", who.actor, "remote", remoteIP(c), "refusals", n)
	return s.recordAlone(c, http.StatusConflict)
}

func (s *server) listCredentials(c echo.Context, t tenant.Tenant) error {
	cs, err := s.Tenants.Credentials(c.Request().Context(), t.ID)
	if err != nil {
		return err
	}
	out := make([]credentialView, 0, len(cs))
	for _, cr := range cs {
		if cr.Kind != tenant.KindAPIKey { // listed at .../api-keys
			out = append(out, viewCredential(cr))
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"credentials": out})
}

func (s *server) deleteCredential(c echo.Context, t tenant.Tenant) error {
	id := c.Param("id")
	ctx := c.Request().Context()
	if k, err := s.Tenants.APIKey(ctx, id); err == nil && k.Tenant == t.ID {
		return notFound("tenant %q has no credential %q (API keys are revoked at .../api-keys/{id})", t.ID, id)
	}
	_, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, s.Tenants.DeleteCredential(ctx, t.ID, id)
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("tenant %q has no credential %q", t.ID, id)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// nonNil makes empty collections encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
