package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// DNSRecord is a record the operator of a sending domain should publish.
type DNSRecord struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Value   string `json:"value"`
	Purpose string `json:"purpose"`
}

// domainView is a domain with the DNS records it needs.
type domainView struct {
	tenant.Domain
	DNSRecords []DNSRecord `json:"dns_records"`
}

// dnsRecords is the advice for domain d.
//
// DKIM seam: when signing keys exist (a later issue), this function takes
// the domain's keys and puts one {"type":"TXT","name":"<selector>._domainkey.<domain>",
// "value":"v=DKIM1; k=...; p=...","purpose":"dkim"} per key first.
func (s *server) dnsRecords(d tenant.Domain) []DNSRecord {
	var rs []DNSRecord
	if s.Hostname != "" {
		rs = append(rs, DNSRecord{
			Type: "TXT", Name: d.Name, Value: "v=spf1 a:" + s.Hostname + " ~all", Purpose: "spf",
		})
	}
	rs = append(rs, DNSRecord{
		Type: "TXT", Name: "_dmarc." + d.Name,
		Value:   "v=DMARC1; p=none; rua=mailto:dmarc-reports@" + d.Name,
		Purpose: "dmarc",
	})
	return rs
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
	d := tenant.Domain{Name: name, Tenant: t.ID, CreatedAt: s.now()}
	err = s.Tenants.AddDomain(c.Request().Context(), d)
	if errors.Is(err, tenant.ErrExists) {
		// Said the same whoever owns it: the owner is not revealed.
		return conflict("domain %q is already registered", name)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tenants/"+t.ID+"/domains/"+name)
	return c.JSON(http.StatusCreated, domainView{d, s.dnsRecords(d)})
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
	return c.JSON(http.StatusOK, domainView{d, s.dnsRecords(d)})
}

func (s *server) deleteDomain(c echo.Context, t tenant.Tenant) error {
	d, err := s.ownDomain(c, t)
	if err != nil {
		return err
	}
	err = s.Tenants.DeleteDomain(c.Request().Context(), t.ID, d.Name)
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
	if err := tenant.ValidKind(l.Kind); err != nil {
		return invalid("%v", err)
	}
	ctx := c.Request().Context()
	old, err := s.Tenants.List(ctx, t.ID, id)
	status := http.StatusOK
	switch {
	case errors.Is(err, tenant.ErrNotFound):
		status = http.StatusCreated
		c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tenants/"+t.ID+"/lists/"+id)
	case err != nil:
		return err
	default:
		l.CreatedAt = old.CreatedAt
	}
	if err := s.Tenants.PutList(ctx, l); err != nil {
		return err
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
