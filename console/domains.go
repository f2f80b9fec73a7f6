package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
)

// The Domains pages: a tenant's sending domains, the DNS records each
// should publish with what the DNS holds now, its readiness report, and
// DKIM key rotation (publish a new key, activate it, which retires the
// active key of its algorithm, and delete a key that no longer signs).
// Each change is the registry call of the API's route after the same
// checks, audited as that route; the advice and the checks are package
// readiness's, which the API calls too.

type domainsData struct {
	Tenant  tenant.Tenant
	Domains []tenant.Domain
	// Add: the user may add a domain (the API's rule: operators only).
	Add bool
	// Name is the domain the form was sent with, on a refusal.
	Name string
}

// domains lists the tenant's sending domains.
func (s *server) domains(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	s.renderDomains(w, r, v, t, http.StatusOK, page{}, "")
}

func (s *server) renderDomains(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, status int, p page, name string) {
	ds, err := s.Tenants.Domains(r.Context(), t.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	p.Title, p.User, p.CSRF = "Domains: "+t.Name, v, v.sess.CSRF
	p.Data = &domainsData{Tenant: t, Domains: ds, Name: name,
		Add: v.operator()}
	s.render(w, r, status, "domains", p)
}

// addDomain is POST /api/v1/tenants/{tenant}/domains: the domain, with
// its first DKIM keys (RSA and Ed25519, RFC 8463), made and registered
// by the registry's calls the API makes. Like the API, it is an
// operator's: a domain lets the tenant sign mail as that domain, so
// whoever may add one must know the tenant owns it.
func (s *server) addDomain(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	raw := strings.TrimSpace(r.PostFormValue("domain"))
	name, err := tenant.NormalizeDomain(raw)
	if err != nil {
		s.renderDomains(w, r, v, t, http.StatusBadRequest, page{Problem: "Not added: " + err.Error() + "."}, raw)
		return
	}
	// The keys are made before the transaction, which must not wait for
	// them.
	d, keys, err := s.Tenants.PrepareDomain(t.ID, name)
	if err == nil {
		_, err = s.change(r.Context(), r, v, changeOf{t.ID, "POST /api/v1/tenants/:tenant/domains", "/api/v1/tenants/" + t.ID + "/domains"},
			func(ctx context.Context) (int, error) {
				return http.StatusCreated, s.Tenants.AddDomain(ctx, d, keys...)
			})
	}
	if errors.Is(err, tenant.ErrExists) {
		// Said the same whoever has it, as the API: the owner is not
		// revealed.
		s.renderDomains(w, r, v, t, http.StatusConflict, page{Problem: "The domain " + name + " is already registered."}, raw)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	domainDone(w, r, t, d, "domain-added")
}

type domainData struct {
	Tenant  tenant.Tenant
	Domain  tenant.Domain
	Keys    []tenant.DKIMKey
	Records []readiness.DNSRecord
	// Check is what the DNS holds for Records (nil: no resolver).
	Check *readiness.DNSCheck
	Write bool
	// Readiness: a readiness report can be asked for.
	Readiness bool
}

// Status is the DNS check's status of records[i], "" when not checked.
func (d *domainData) Status(i int) string {
	if d.Check == nil || i >= len(d.Check.Records) {
		return ""
	}
	return d.Check.Records[i].Status
}

// ownDomain returns the domain in the path if t owns it; another
// tenant's domain is as unknown as one nobody has, as in the API.
func (s *server) ownDomain(ctx context.Context, r *http.Request, t tenant.Tenant) (tenant.Domain, error) {
	name, err := tenant.NormalizeDomain(r.PathValue("domain"))
	if err != nil {
		return tenant.Domain{}, tenant.ErrNotFound
	}
	d, err := s.Tenants.Domain(ctx, name)
	if err == nil && d.Tenant != t.ID {
		err = tenant.ErrNotFound
	}
	return d, err
}

// domainHandler is a tenant handler for one of the tenant's domains.
type domainHandler func(http.ResponseWriter, *http.Request, *visit, tenant.Tenant, tenant.Domain)

func (s *server) withDomain(h domainHandler) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
		d, err := s.ownDomain(r.Context(), r, t)
		if errors.Is(err, tenant.ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, "The tenant has no such domain.")
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		h(w, r, v, t, d)
	}
}

// domainPage shows the records to publish, each with what the DNS holds
// now, and the keys with the rotation forms.
func (s *server) domainPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain) {
	s.renderDomain(w, r, v, t, d, http.StatusOK, page{Notice: notices[r.URL.Query().Get("done")]})
}

func (s *server) renderDomain(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain, status int, p page) {
	ctx := r.Context()
	keys, err := s.Tenants.Keys(ctx, d.Name)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	dd := domainData{Tenant: t, Domain: d, Keys: keys, Records: readiness.Advice(d, keys, s.Hostname),
		Write: canWrite(v, t), Readiness: s.Readiness != nil}
	if s.LookupTXT != nil {
		dd.Check = readiness.CheckDNS(ctx, s.LookupTXT, s.Now().UTC(), dd.Records)
	}
	p.Title, p.User, p.CSRF, p.Data = d.Name, v, v.sess.CSRF, &dd
	s.render(w, r, status, "domain", p)
}

// readinessPage is GET …/domains/{domain}/readiness as a page.
func (s *server) readinessPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain) {
	if s.Readiness == nil {
		s.fail(w, r, http.StatusNotFound, "Readiness reports are not available.")
		return
	}
	ctx := r.Context()
	keys, err := s.Tenants.Keys(ctx, d.Name)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	rep, err := s.Readiness.Report(ctx, readiness.Subject{Tenant: t, Domain: d.Name, Keys: keys})
	if err != nil {
		s.internal(w, r, err) // the client went away while waiting for a slot
		return
	}
	s.render(w, r, http.StatusOK, "readiness", page{Title: "Readiness: " + d.Name, User: v, CSRF: v.sess.CSRF,
		Data: &struct {
			Tenant tenant.Tenant
			Domain tenant.Domain
			Report *readiness.Report
		}{t, d, rep}})
}

// domainDone redirects to the domain's page with a notice code.
func domainDone(w http.ResponseWriter, r *http.Request, t tenant.Tenant, d tenant.Domain, code string) {
	http.Redirect(w, r, domainPath(t, d)+"?"+url.Values{"done": {code}}.Encode(), http.StatusSeeOther)
}

func domainPath(t tenant.Tenant, d tenant.Domain) string {
	return tenantPath(t.ID) + "/domains/" + url.PathEscape(d.Name)
}

// keyChange names a key route of the API in the audit log.
func keyChange(method, route string, t tenant.Tenant, d tenant.Domain, target string) changeOf {
	return changeOf{t.ID, method + " /api/v1/tenants/:tenant/domains/:domain/keys" + route,
		"/api/v1/tenants/" + t.ID + "/domains/" + d.Name + "/keys" + target}
}

// publishKey is POST …/domains/{domain}/keys: a new key, published in
// the advice but signing nothing until activated.
func (s *server) publishKey(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain) {
	alg, ok := dkim.ParseAlgorithm(r.PostFormValue("algorithm"))
	if !ok {
		s.renderDomain(w, r, v, t, d, http.StatusBadRequest, page{Problem: "Choose RSA or Ed25519."})
		return
	}
	// The key is made before the transaction, which must not wait for it.
	k, err := s.Tenants.GenerateKey(d.Name, alg, tenant.KeyPublished)
	if err == nil {
		_, err = s.change(r.Context(), r, v, keyChange(http.MethodPost, "", t, d, ""), func(ctx context.Context) (int, error) {
			return http.StatusCreated, s.Tenants.PutKey(ctx, k)
		})
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	domainDone(w, r, t, d, "key-published")
}

// formKey is the key of d the form names, or false once the answer is
// written (no such key, or the store failed).
func (s *server) formKey(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain) (tenant.DKIMKey, bool) {
	sel := r.PostFormValue("selector")
	keys, err := s.Tenants.Keys(r.Context(), d.Name)
	if err != nil {
		s.internal(w, r, err)
		return tenant.DKIMKey{}, false
	}
	i := slices.IndexFunc(keys, func(k tenant.DKIMKey) bool { return sel != "" && k.Selector == sel })
	if i < 0 {
		s.renderDomain(w, r, v, t, d, http.StatusNotFound, page{Problem: "The domain has no such key."})
		return tenant.DKIMKey{}, false
	}
	return keys[i], true
}

// activateKey is POST …/keys/{selector}/activate: signing switches to
// the key, and the active key of its algorithm is retired. Its record
// must be in the DNS first (mail signed with an unpublished key fails
// DKIM, RFC 6376 section 6.1.2) unless the user ticks the box to force.
func (s *server) activateKey(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain) {
	ctx := r.Context()
	k, ok := s.formKey(w, r, v, t, d)
	if !ok {
		return
	}
	if r.PostFormValue("force") != "yes" && s.LookupTXT != nil {
		if ok, why := readiness.Published(ctx, s.LookupTXT, s.Now().UTC(), k); !ok {
			s.renderDomain(w, r, v, t, d, http.StatusConflict, page{Problem: "The TXT record " + k.Name() + " is not published as advised (" + why +
				"): publish it and try again, or tick the box to activate it anyway."})
			return
		}
	}
	// The DNS was asked above: nothing slow runs in the transaction.
	if _, err := s.change(ctx, r, v, keyChange(http.MethodPost, "/:selector/activate", t, d, "/"+k.Selector+"/activate"), func(ctx context.Context) (int, error) {
		return http.StatusOK, s.Tenants.ActivateKey(ctx, k.Domain, k.Selector, s.Now().UTC())
	}); err != nil {
		s.internal(w, r, err)
		return
	}
	domainDone(w, r, t, d, "key-activated")
}

// deleteKey is DELETE …/keys/{selector}: a key that no longer signs goes,
// and its record leaves the advice (remove it from the DNS once mail
// signed with it is old).
func (s *server) deleteKey(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, d tenant.Domain) {
	ctx := r.Context()
	k, ok := s.formKey(w, r, v, t, d)
	if !ok {
		return
	}
	_, err := s.change(ctx, r, v, keyChange(http.MethodDelete, "/:selector", t, d, "/"+k.Selector), func(ctx context.Context) (int, error) {
		return http.StatusNoContent, s.Tenants.DeleteKey(ctx, k.Domain, k.Selector)
	})
	if errors.Is(err, tenant.ErrActiveKey) {
		s.renderDomain(w, r, v, t, d, http.StatusConflict, page{Problem: "Key " + k.Selector + " is signing: activate another key of the same algorithm first."})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	domainDone(w, r, t, d, "key-deleted")
}
