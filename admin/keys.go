package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// dnsCheck is what the DNS held for a domain's records when asked.
type dnsCheck struct {
	CheckedAt time.Time        `json:"checked_at"`
	Records   []dnsCheckResult `json:"records"`
}

// dnsCheckResult is one record's status: "ok" (published as advised),
// "missing" (no such record), "different" (a record of that purpose with
// another value: fine for SPF and DMARC if deliberate, never for DKIM) or
// "error" (the lookup failed; try again).
type dnsCheckResult struct {
	Name     string   `json:"name"`
	Purpose  string   `json:"purpose"`
	Selector string   `json:"selector,omitempty"`
	Status   string   `json:"status"`
	Found    []string `json:"found,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// checkDNS looks each advised record up, with the comparison the
// readiness report's DKIM checks use too (readiness.CheckRecord).
func (s *server) checkDNS(ctx context.Context, recs []DNSRecord) *dnsCheck {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out := &dnsCheck{CheckedAt: s.now(), Records: []dnsCheckResult{}}
	for _, r := range recs {
		got := readiness.CheckRecord(ctx, s.LookupTXT, r.Name, r.Purpose, r.Value)
		res := dnsCheckResult{Name: r.Name, Purpose: r.Purpose, Selector: r.Selector, Status: got.Status, Found: got.Found}
		if got.Err != nil {
			res.Error = got.Err.Error()
		}
		out.Records = append(out.Records, res)
	}
	return out
}

// published reports whether k's record is in the DNS as advised.
func (s *server) published(ctx context.Context, k tenant.DKIMKey) (bool, string) {
	res := s.checkDNS(ctx, []DNSRecord{dkimRecord(k)}).Records[0]
	if res.Status == "ok" {
		return true, ""
	}
	if res.Error != "" {
		return false, res.Error
	}
	return false, res.Status
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
