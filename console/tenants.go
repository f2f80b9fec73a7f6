package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/heedmail/heed/internal/tenant"
)

// The pages of tenants, their lists, credentials and API keys. Each
// change is the registry call the admin API's handler makes after the
// same checks, and is audited as the API route it stands for.

type tenantsData struct {
	Tenants []tenant.Tenant
	// ID, Name and Postal are the create form's values after a refusal.
	ID, Name, Postal string
}

// tenants lists every tenant to an operator, with the form to create
// one; a tenant's user has one tenant, and is sent to its page.
func (s *server) tenants(w http.ResponseWriter, r *http.Request, v *visit) {
	if !v.operator() {
		http.Redirect(w, r, tenantPath(v.user.Tenant), http.StatusSeeOther)
		return
	}
	s.renderTenants(w, r, v, http.StatusOK, tenantsData{}, "")
}

func (s *server) renderTenants(w http.ResponseWriter, r *http.Request, v *visit, status int, d tenantsData, problem string) {
	ts, err := s.Tenants.Tenants(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	d.Tenants = ts
	s.render(w, r, status, "tenants", page{Title: "Tenants", User: v, CSRF: v.sess.CSRF, Problem: problem, Data: &d})
}

// notText is the problem of the first of values that is not text
// (tenant.ValidText: a NUL, bytes that are not UTF-8, which PostgreSQL
// refuses and bbolt would keep), or "".
func notText(values ...string) string {
	for _, v := range values {
		if err := tenant.ValidText(v); err != nil {
			return "A name or address " + err.Error() + "."
		}
	}
	return ""
}

// createTenant is POST /api/v1/tenants, for operators.
func (s *server) createTenant(w http.ResponseWriter, r *http.Request, v *visit) {
	if !v.operator() {
		s.fail(w, r, http.StatusForbidden, "Only an operator may create tenants.")
		return
	}
	d := tenantsData{ID: strings.TrimSpace(r.PostFormValue("id")), Name: strings.TrimSpace(r.PostFormValue("name")),
		Postal: strings.TrimSpace(r.PostFormValue("postal_address"))}
	if err := tenant.ValidID(d.ID); err != nil {
		s.renderTenants(w, r, v, http.StatusBadRequest, d, "Id: "+err.Error())
		return
	}
	if d.Name == "" {
		s.renderTenants(w, r, v, http.StatusBadRequest, d, "A name is required.")
		return
	}
	if problem := notText(d.Name, d.Postal); problem != "" {
		s.renderTenants(w, r, v, http.StatusBadRequest, d, problem)
		return
	}
	t := tenant.Tenant{ID: d.ID, Name: d.Name, PostalAddress: d.Postal, CreatedAt: s.Now().UTC()}
	_, err := s.change(r.Context(), r, v, changeOf{"", "POST /api/v1/tenants", "/api/v1/tenants"}, func(ctx context.Context) (int, error) {
		return http.StatusCreated, s.Tenants.CreateTenant(ctx, t)
	})
	if errors.Is(err, tenant.ErrExists) {
		s.renderTenants(w, r, v, http.StatusConflict, d, fmt.Sprintf("Tenant %q exists already.", d.ID))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	done(w, r, t.ID, "tenant-created")
}

type tenantData struct {
	Tenant      tenant.Tenant
	Lists       []tenant.List
	Credentials []tenant.Credential
	APIKeys     []tenant.Credential
	// Write: the user may change the tenant; Operator: manage API keys.
	Write, Operator bool
	// Secret is a credential's password or an API key, shown once, with
	// what it belongs to.
	Secret, SecretOf string
}

// done redirects to the tenant's page with a notice code.
func done(w http.ResponseWriter, r *http.Request, id, code string) {
	http.Redirect(w, r, tenantPath(id)+"?"+url.Values{"done": {code}}.Encode(), http.StatusSeeOther)
}

func tenantPath(id string) string { return Prefix + "tenants/" + url.PathEscape(id) }

// tenantPage shows a tenant: its name and postal address, lists,
// credentials and API keys, with the forms its user may use.
func (s *server) tenantPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	s.renderTenant(w, r, v, t, http.StatusOK, page{Notice: notices[r.URL.Query().Get("done")]}, nil)
}

// renderTenant renders the tenant's page with p's notice or problem, and
// with more (a secret shown once) applied to its data.
func (s *server) renderTenant(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, status int, p page, more func(*tenantData)) {
	ctx := r.Context()
	d := tenantData{Tenant: t, Write: canWrite(v, t), Operator: v.operator()}
	var err error
	if d.Lists, err = s.Tenants.Lists(ctx, t.ID); err != nil {
		s.internal(w, r, err)
		return
	}
	cs, err := s.Tenants.Credentials(ctx, t.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	for _, c := range cs {
		if c.Kind == tenant.KindAPIKey {
			d.APIKeys = append(d.APIKeys, c)
		} else {
			d.Credentials = append(d.Credentials, c)
		}
	}
	if more != nil {
		more(&d)
	}
	p.Title, p.User, p.CSRF, p.Data = t.Name, v, v.sess.CSRF, &d
	s.render(w, r, status, "tenant", p)
}

// refuse shows the tenant's page again with a problem.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, status int, problem string) {
	s.renderTenant(w, r, v, t, status, page{Problem: problem}, nil)
}

// editTenant is PATCH /api/v1/tenants/{tenant}: the name and the postal
// address the footer of marketing mail carries (CAN-SPAM).
func (s *server) editTenant(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	if t.Name = strings.TrimSpace(r.PostFormValue("name")); t.Name == "" {
		s.refuse(w, r, v, t, http.StatusBadRequest, "The name must not be empty.")
		return
	}
	t.PostalAddress = strings.TrimSpace(r.PostFormValue("postal_address"))
	if problem := notText(t.Name, t.PostalAddress); problem != "" {
		s.refuse(w, r, v, t, http.StatusBadRequest, problem)
		return
	}
	if _, err := s.change(r.Context(), r, v, changeOf{t.ID, "PATCH /api/v1/tenants/:tenant", "/api/v1/tenants/" + t.ID}, func(ctx context.Context) (int, error) {
		return http.StatusOK, s.Tenants.UpdateTenant(ctx, t)
	}); err != nil {
		s.internal(w, r, err)
		return
	}
	done(w, r, t.ID, "tenant-saved")
}

// putList is PUT /api/v1/tenants/{tenant}/lists/{list}: creates the list
// or changes its name, kind and unsubscribe choice.
func (s *server) putList(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	ctx := r.Context()
	l := tenant.List{Tenant: t.ID, ID: strings.TrimSpace(r.PostFormValue("id")), Name: strings.TrimSpace(r.PostFormValue("name")),
		Kind: r.PostFormValue("kind"), Unsubscribe: r.PostFormValue("unsubscribe") == "yes", CreatedAt: s.Now().UTC()}
	if err := tenant.ValidID(l.ID); err != nil {
		s.refuse(w, r, v, t, http.StatusBadRequest, "List id: "+err.Error())
		return
	}
	if l.Name == "" {
		s.refuse(w, r, v, t, http.StatusBadRequest, "A list needs a name.")
		return
	}
	if problem := notText(l.Name); problem != "" {
		s.refuse(w, r, v, t, http.StatusBadRequest, problem)
		return
	}
	if err := tenant.ValidKind(l.Kind); err != nil {
		s.refuse(w, r, v, t, http.StatusBadRequest, err.Error())
		return
	}
	want := l
	// Created or replaced is decided in the transaction that writes it.
	c := changeOf{t.ID, "PUT /api/v1/tenants/:tenant/lists/:list", "/api/v1/tenants/" + t.ID + "/lists/" + l.ID}
	if _, err := s.change(ctx, r, v, c, func(ctx context.Context) (int, error) {
		saved, created, err := s.Tenants.SaveList(ctx, want)
		l = saved // afresh on each run: the function may run more than once
		if created {
			return http.StatusCreated, err
		}
		return http.StatusOK, err
	}); err != nil {
		s.internal(w, r, err)
		return
	}
	done(w, r, t.ID, "list-saved")
}

// createCredential is POST /api/v1/tenants/{tenant}/credentials: a
// password credential, whose password is on this answer only, or an ip
// credential, within the networks the user may open (a tenant's user as
// a tenant's API key: no more than a site).
func (s *server) createCredential(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	ctx := r.Context()
	kind, cidr, list := r.PostFormValue("kind"), strings.TrimSpace(r.PostFormValue("cidr")), r.PostFormValue("default_list")
	if list != "" {
		if _, err := s.Tenants.List(ctx, t.ID, list); tenant.ValidID(list) != nil || err != nil {
			s.refuse(w, r, v, t, http.StatusBadRequest, "The tenant has no such list.")
			return
		}
	}
	limit := tenant.TenantNetworks
	if v.operator() {
		limit = tenant.OperatorNetworks
	}
	var (
		cr       tenant.Credential
		password string
	)
	switch kind {
	case tenant.KindIP:
		p, perr := tenant.ParseNetwork(cidr)
		if perr == nil {
			perr = limit.Check(p)
		}
		if perr != nil {
			s.refuse(w, r, v, t, http.StatusBadRequest, "Network: "+strings.TrimPrefix(perr.Error(), tenant.ErrNetworkRefused.Error()+": "))
			return
		}
	case tenant.KindPassword, "":
	default:
		s.refuse(w, r, v, t, http.StatusBadRequest, "Choose a password or a network credential.")
		return
	}
	c := changeOf{t.ID, "POST /api/v1/tenants/:tenant/credentials", "/api/v1/tenants/" + t.ID + "/credentials"}
	_, err := s.change(ctx, r, v, c, func(ctx context.Context) (int, error) {
		var err error
		if kind == tenant.KindIP {
			cr, err = s.Tenants.CreateIPWithin(ctx, limit, t.ID, cidr, list)
		} else {
			cr, password, err = s.Tenants.CreatePassword(ctx, t.ID, list)
		}
		return http.StatusCreated, err
	})
	switch {
	case errors.Is(err, tenant.ErrTooManyNetworks):
		s.refuse(w, r, v, t, http.StatusUnprocessableEntity, fmt.Sprintf("The tenant has the %d network credentials it may hold; revoke one first, or ask the operator.", tenant.MaxTenantIPCredentials))
		return
	case errors.Is(err, tenant.ErrExists):
		// As the API: whether a network is taken is itself an answer, so
		// each refusal is logged and audited for the operator to see.
		s.Logger.Warn("console: ip credential refused: the network overlaps another tenant's", "tenant", t.ID, "cidr", cidr, "user", v.user.Username)
		// Kept in the audit log though nothing changed, and answered
		// only once kept, so that no probe gets its answer unrecorded.
		if err := s.recordAlone(ctx, r, v, c, http.StatusConflict); err != nil {
			s.internal(w, r, err)
			return
		}
		s.refuse(w, r, v, t, http.StatusConflict, strings.TrimPrefix(err.Error(), tenant.ErrExists.Error()+": "))
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	if password == "" {
		done(w, r, t.ID, "credential-created")
		return
	}
	s.renderTenant(w, r, v, t, http.StatusCreated, page{}, func(d *tenantData) {
		d.Secret, d.SecretOf = password, "the password of "+cr.Username
	})
}

// revokeCredential is DELETE …/credentials/{id} or …/api-keys/{id}
// (apiKey), after the user typed the credential's name: a revoked
// credential's mail or API calls fail at once.
func (s *server) revokeCredential(apiKey bool) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
		ctx := r.Context()
		id := r.PostFormValue("id")
		cr, err := s.credential(ctx, t, id)
		if errors.Is(err, tenant.ErrNotFound) || err == nil && (cr.Kind == tenant.KindAPIKey) != apiKey {
			s.refuse(w, r, v, t, http.StatusNotFound, "There is no such credential.")
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if !same(confirmation(cr), strings.TrimSpace(r.PostFormValue("confirm"))) {
			s.refuse(w, r, v, t, http.StatusBadRequest, "To revoke it, type "+confirmation(cr)+" in the box beside its button.")
			return
		}
		route, code := "credentials", "credential-revoked"
		if apiKey {
			route, code = "api-keys", "api-key-revoked"
		}
		c := changeOf{t.ID, "DELETE /api/v1/tenants/:tenant/" + route + "/:id", "/api/v1/tenants/" + t.ID + "/" + route + "/" + cr.ID}
		if _, err := s.change(ctx, r, v, c, func(ctx context.Context) (int, error) {
			return http.StatusNoContent, s.Tenants.DeleteCredential(ctx, t.ID, cr.ID)
		}); err != nil {
			s.internal(w, r, err)
			return
		}
		done(w, r, t.ID, code)
	}
}

// credential finds the tenant's credential id, of any kind.
func (s *server) credential(ctx context.Context, t tenant.Tenant, id string) (tenant.Credential, error) {
	cs, err := s.Tenants.Credentials(ctx, t.ID)
	if err != nil {
		return tenant.Credential{}, err
	}
	for _, c := range cs {
		if id != "" && c.ID == id {
			return c, nil
		}
	}
	return tenant.Credential{}, tenant.ErrNotFound
}

// confirmation is what the user types to revoke a credential: the name
// people know it by.
func confirmation(c tenant.Credential) string {
	switch {
	case c.Username != "":
		return c.Username
	case c.Network.IsValid():
		return c.Network.String()
	case c.Name != "":
		return c.Name
	}
	return c.ID
}

// createAPIKey is POST /api/v1/tenants/{tenant}/api-keys, for operators:
// the key is on this answer only.
func (s *server) createAPIKey(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	acc, name := r.PostFormValue("access"), strings.TrimSpace(r.PostFormValue("name"))
	if acc != tenant.ReadOnly && acc != tenant.ReadWrite {
		s.refuse(w, r, v, t, http.StatusBadRequest, "Choose read-only or read-write access.")
		return
	}
	if len(name) > 100 {
		s.refuse(w, r, v, t, http.StatusBadRequest, "The name may be at most 100 bytes.")
		return
	}
	if problem := notText(name); problem != "" {
		s.refuse(w, r, v, t, http.StatusBadRequest, problem)
		return
	}
	var (
		cr  tenant.Credential
		key string
	)
	c := changeOf{t.ID, "POST /api/v1/tenants/:tenant/api-keys", "/api/v1/tenants/" + t.ID + "/api-keys"}
	if _, err := s.change(r.Context(), r, v, c, func(ctx context.Context) (status int, err error) {
		cr, key, err = s.Tenants.CreateAPIKey(ctx, t.ID, acc, name)
		return http.StatusCreated, err
	}); err != nil {
		s.internal(w, r, err)
		return
	}
	s.renderTenant(w, r, v, t, http.StatusCreated, page{}, func(d *tenantData) {
		d.Secret, d.SecretOf = key, "API key "+confirmation(cr)+" ("+acc+")"
	})
}
