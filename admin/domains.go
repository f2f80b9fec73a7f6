package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// DNSRecord is a record the operator of a sending domain should publish
// (package readiness advises them, for the console too).
type DNSRecord = readiness.DNSRecord

// domainView is a domain with its keys and the DNS records it needs.
type domainView struct {
	tenant.Domain
	Keys       []keyView   `json:"keys"`
	DNSRecords []DNSRecord `json:"dns_records"`
	// DNSCheck is what the DNS holds now (GET of one domain only).
	DNSCheck *readiness.DNSCheck `json:"dns_check,omitempty"`
}

// keyView is a DKIM key as the API shows it: never the private key.
type keyView struct {
	Selector    string    `json:"selector"`
	Algorithm   string    `json:"algorithm"`
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
	DNSRecord   DNSRecord `json:"dns_record"`
}

func viewKey(k tenant.DKIMKey) keyView {
	return keyView{
		Selector: k.Selector, Algorithm: k.Algorithm, State: k.State,
		CreatedAt: k.CreatedAt, ActivatedAt: k.ActivatedAt, RetiredAt: k.RetiredAt,
		DNSRecord: dkimRecord(k),
	}
}

func dkimRecord(k tenant.DKIMKey) DNSRecord { return readiness.DKIMRecord(k) }

// view is d with its keys and the records to publish (readiness.Advice).
func (s *server) view(d tenant.Domain, keys []tenant.DKIMKey) domainView {
	v := domainView{Domain: d, Keys: []keyView{}, DNSRecords: readiness.Advice(d, keys, s.Hostname)}
	for _, k := range keys {
		v.Keys = append(v.Keys, viewKey(k))
	}
	return v
}

func (s *server) createDomain(c echo.Context, t tenant.Tenant) error {
	var req struct {
		Domain string `json:"domain"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	name, err := tenant.NormalizeDomain(req.Domain)
	if err != nil {
		return invalid("domain: %v", err)
	}
	// The keys are made before the transaction, which must not wait for
	// them.
	d, keys, err := s.Tenants.PrepareDomain(t.ID, name)
	if err == nil {
		_, err = s.change(c, func(ctx context.Context) (int, error) {
			return http.StatusCreated, s.Tenants.AddDomain(ctx, d, keys...)
		})
	}
	if errors.Is(err, tenant.ErrExists) {
		// Said the same whoever owns it: the owner is not revealed.
		return conflict("domain %q is already registered", name)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tenants/"+t.ID+"/domains/"+name)
	return c.JSON(http.StatusCreated, s.view(d, keys))
}

func (s *server) listDomains(c echo.Context, t tenant.Tenant) error {
	ds, err := s.Tenants.Domains(c.Request().Context(), t.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"domains": nonNil(ds)})
}

// ownDomain returns the domain in the path if tenant t owns it; another
// tenant's domain is as unknown as one nobody has.
func (s *server) ownDomain(c echo.Context, t tenant.Tenant) (tenant.Domain, error) {
	raw := c.Param("domain")
	name, err := tenant.NormalizeDomain(raw)
	if err != nil {
		return tenant.Domain{}, notFound("tenant %q has no domain %q", t.ID, raw)
	}
	d, err := s.Tenants.Domain(c.Request().Context(), name)
	if errors.Is(err, tenant.ErrNotFound) || err == nil && d.Tenant != t.ID {
		return tenant.Domain{}, notFound("tenant %q has no domain %q", t.ID, name)
	}
	return d, err
}

func (s *server) getDomain(c echo.Context, t tenant.Tenant) error {
	d, err := s.ownDomain(c, t)
	if err != nil {
		return err
	}
	keys, err := s.Tenants.Keys(c.Request().Context(), d.Name)
	if err != nil {
		return err
	}
	v := s.view(d, keys)
	if s.LookupTXT != nil {
		v.DNSCheck = s.checkDNS(c.Request().Context(), v.DNSRecords)
	}
	return c.JSON(http.StatusOK, v)
}

func (s *server) deleteDomain(c echo.Context, t tenant.Tenant) error {
	d, err := s.ownDomain(c, t)
	if err != nil {
		return err
	}
	_, err = s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, s.Tenants.DeleteDomain(ctx, t.ID, d.Name)
	})
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("tenant %q has no domain %q", t.ID, d.Name)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type listRequest struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Unsubscribe makes a transactional list carry List-Unsubscribe;
	// marketing mail always does.
	Unsubscribe bool `json:"unsubscribe"`
}

// putList creates or replaces a list: 201 when created, 200 when replaced.
func (s *server) putList(c echo.Context, t tenant.Tenant) error {
	id := c.Param("list")
	if err := tenant.ValidID(id); err != nil {
		return invalid("list id in the path: %v", err)
	}
	var req listRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	l := tenant.List{
		Tenant: t.ID, ID: id, Name: strings.TrimSpace(req.Name), Kind: req.Kind,
		Unsubscribe: req.Unsubscribe, CreatedAt: s.now(),
	}
	if l.Name == "" {
		return invalid("name is required")
	}
	if err := tenant.ValidText(l.Name); err != nil {
		return invalid("name %v", err)
	}
	if err := tenant.ValidKind(l.Kind); err != nil {
		return invalid("%v", err)
	}
	want := l
	// Created or replaced is decided in the transaction that writes it.
	status, err := s.change(c, func(ctx context.Context) (int, error) {
		saved, created, err := s.Tenants.SaveList(ctx, want)
		l = saved // afresh on each run: the function may run more than once
		if created {
			return http.StatusCreated, err
		}
		return http.StatusOK, err
	})
	if err != nil {
		return err
	}
	if status == http.StatusCreated {
		c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tenants/"+t.ID+"/lists/"+id)
	}
	return c.JSON(status, l)
}

func (s *server) listLists(c echo.Context, t tenant.Tenant) error {
	ls, err := s.Tenants.Lists(c.Request().Context(), t.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"lists": nonNil(ls)})
}

func (s *server) getList(c echo.Context, t tenant.Tenant) error {
	id := c.Param("list")
	l, err := s.Tenants.List(c.Request().Context(), t.ID, id)
	if errors.Is(err, tenant.ErrNotFound) {
		return notFound("tenant %q has no list %q", t.ID, id)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}
