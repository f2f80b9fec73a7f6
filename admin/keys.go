package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// dnsCheck and dnsCheckResult are the DNS check of a domain's records
// (readiness.CheckDNS, which the console's Domains page calls too).
type (
	dnsCheck       = readiness.DNSCheck
	dnsCheckResult = readiness.DNSCheckResult
)

func (s *server) checkDNS(ctx context.Context, recs []DNSRecord) *dnsCheck {
	return readiness.CheckDNS(ctx, s.LookupTXT, s.now(), recs)
}

// published reports whether k's record is in the DNS as advised.
func (s *server) published(ctx context.Context, k tenant.DKIMKey) (bool, string) {
	return readiness.Published(ctx, s.LookupTXT, s.now(), k)
}

// createKey makes a new key for rotation; it signs nothing until
// activated.
func (s *server) createKey(c echo.Context, t tenant.Tenant) error {
	d, err := s.ownDomain(c, t)
	if err != nil {
		return err
	}
	var req struct {
		Algorithm string `json:"algorithm"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	alg, ok := dkim.ParseAlgorithm(req.Algorithm)
	if !ok {
		return invalid(`algorithm must be "rsa" or "ed25519"`)
	}
	// The key is made before the transaction, which must not wait for it.
	k, err := s.Tenants.GenerateKey(d.Name, alg, tenant.KeyPublished)
	if err != nil {
		return err
	}
	if _, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusCreated, s.Tenants.PutKey(ctx, k)
	}); err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tenants/"+t.ID+"/domains/"+d.Name+"/keys/"+k.Selector)
	return c.JSON(http.StatusCreated, viewKey(k))
}

// ownKey returns the key in the path if it belongs to a domain of t.
func (s *server) ownKey(c echo.Context, t tenant.Tenant) (tenant.DKIMKey, error) {
	d, err := s.ownDomain(c, t)
	if err != nil {
		return tenant.DKIMKey{}, err
	}
	keys, err := s.Tenants.Keys(c.Request().Context(), d.Name)
	if err != nil {
		return tenant.DKIMKey{}, err
	}
	sel := c.Param("selector")
	for _, k := range keys {
		if k.Selector == sel {
			return k, nil
		}
	}
	return tenant.DKIMKey{}, notFound("domain %q has no key with selector %q", d.Name, sel)
}

// activateKey switches signing to a key. Its record must be visible in
// the DNS first (mail signed with an unpublished key fails DKIM and, with
// a strict DMARC policy, is rejected) unless the body says
// {"force": true}.
func (s *server) activateKey(c echo.Context, t tenant.Tenant) error {
	k, err := s.ownKey(c, t)
	if err != nil {
		return err
	}
	var req struct {
		Force bool `json:"force"`
	}
	if err := decodeJSON(c, &req); err != nil && !errors.Is(err, errEmptyBody) {
		return err // an empty body (none, or chunked with nothing) takes the defaults
	}
	ctx := c.Request().Context()
	if !req.Force && s.LookupTXT != nil {
		if ok, why := s.published(ctx, k); !ok {
			return conflict("the TXT record %s is not published as advised (%s): publish it and try again, or send {\"force\": true}", k.Name(), why)
		}
	}
	// The DNS was asked above: nothing slow runs in the transaction.
	if _, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusOK, s.Tenants.ActivateKey(ctx, k.Domain, k.Selector, s.now())
	}); err != nil {
		return err
	}
	return s.getKey(c, t)
}

func (s *server) getKey(c echo.Context, t tenant.Tenant) error {
	k, err := s.ownKey(c, t)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewKey(k))
}

// deleteKey removes a key that no longer signs; its DNS record can go
// once mail signed with it is old.
func (s *server) deleteKey(c echo.Context, t tenant.Tenant) error {
	k, err := s.ownKey(c, t)
	if err != nil {
		return err
	}
	_, err = s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, s.Tenants.DeleteKey(ctx, k.Domain, k.Selector)
	})
	if errors.Is(err, tenant.ErrActiveKey) {
		return conflict("key %s is active: activate another key of the same algorithm first", k.Selector)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
