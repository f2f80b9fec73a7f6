package console

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/tenant"
)

// The Privacy requests page: what is held about one address for the
// tenant, downloadable as the admin API's privacy export is (the
// tenant's part of it), and the erasure of the address, the API's
// DELETE /api/v1/privacy/{address}. That erasure reaches every tenant,
// so it is the operator's alone, as in the API: a tenant's user may
// read what the tenant holds, and asks the operator to erase.

type privacyData struct {
	Tenant tenant.Tenant
	// Address is as searched for, normalised when valid.
	Address string
	Export  *privacy.Export
	// Erased is what an erasure changed.
	Erased *privacy.Erasure
	// Operator: the user may erase.
	Operator bool
}

// privacyAction is the audit log's name of an erasure: the API's route,
// and its target without the address (admin/audit.go keeps none).
var privacyAction = changeOf{"", http.MethodDelete + " /api/v1/privacy/:address", "/api/v1/privacy/" + events.Erased}

// privacyService is the privacy service, or a 404 page without one.
func (s *server) privacyService(w http.ResponseWriter, r *http.Request) (*privacy.Service, bool) {
	if s.Privacy == nil {
		s.fail(w, r, http.StatusNotFound, "Privacy requests are not available.")
		return nil, false
	}
	return s.Privacy, true
}

// privacyPage finds an address (?address=) and shows what the tenant
// holds about it, with the export's download and the erase form.
func (s *server) privacyPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	d := privacyData{Tenant: t, Operator: v.operator()}
	s.renderPrivacy(w, r, v, &d, strings.TrimSpace(r.URL.Query().Get("address")), page{})
}

// renderPrivacy shows the page, with the tenant's export of addr when it
// is given ("": the search form only).
func (s *server) renderPrivacy(w http.ResponseWriter, r *http.Request, v *visit, d *privacyData, addr string, p page) {
	p.Title, p.User, p.CSRF, p.Data = "Privacy requests: "+d.Tenant.Name, v, v.sess.CSRF, d
	svc, ok := s.privacyService(w, r)
	if !ok {
		return
	}
	status := http.StatusOK
	if addr != "" {
		d.Address = addr
		x, bad, err := s.tenantExport(r, svc, d.Tenant, addr)
		switch {
		case bad != "":
			p.Problem, status = bad, http.StatusBadRequest
		case err != nil:
			s.internal(w, r, err)
			return
		default:
			d.Address, d.Export = x.Address, x
		}
	}
	if p.Problem != "" && status == http.StatusOK {
		status = http.StatusBadRequest
	}
	s.render(w, r, status, "privacy", p)
}

// tenantExport is the API's export of addr, the tenant's part; bad is
// why addr is not an address.
func (s *server) tenantExport(r *http.Request, svc *privacy.Service, t tenant.Tenant, addr string) (x *privacy.Export, bad string, err error) {
	norm, err := privacy.Normalize(addr)
	if err != nil {
		return nil, "That is not an email address: " + err.Error(), nil
	}
	all, err := svc.Export(r.Context(), norm)
	if err != nil {
		return nil, "", err
	}
	return all.Of(t.ID), "", nil
}

// exportPrivacy downloads the tenant's export of ?address= as JSON, the
// shape of GET /api/v1/privacy/{address}.
func (s *server) exportPrivacy(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	svc, ok := s.privacyService(w, r)
	if !ok {
		return
	}
	x, bad, err := s.tenantExport(r, svc, t, strings.TrimSpace(r.URL.Query().Get("address")))
	if bad != "" {
		s.fail(w, r, http.StatusBadRequest, bad)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	b, err := json.MarshalIndent(x, "", "  ")
	if err != nil {
		s.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="heed-privacy-`+t.ID+`.json"`)
	w.Write(append(b, '\n'))
}

// erasePrivacy erases the address everywhere, as the API's erasure, once
// it is typed twice alike, and shows what was erased. An erasure works in
// bounded transactions of every store, so it is audited as the API's:
// a record before the first (202) and one of how it ended.
func (s *server) erasePrivacy(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	if !v.operator() {
		s.fail(w, r, http.StatusForbidden, "Only an operator may erase an address: it is erased from every tenant. Ask your operator.")
		return
	}
	svc, ok := s.privacyService(w, r)
	if !ok {
		return
	}
	d := privacyData{Tenant: t, Operator: true}
	addr, again := strings.TrimSpace(r.PostFormValue("address")), strings.TrimSpace(r.PostFormValue("confirm"))
	norm, err := privacy.Normalize(addr)
	if err != nil {
		d.Address = addr
		s.render(w, r, http.StatusBadRequest, "privacy", page{Title: "Privacy requests: " + t.Name, User: v, CSRF: v.sess.CSRF,
			Problem: "Nothing was erased: that is not an email address: " + err.Error(), Data: &d})
		return
	}
	if n, err := privacy.Normalize(again); err != nil || n != norm {
		s.renderPrivacy(w, r, v, &d, norm, page{Problem: "Nothing was erased: the address typed to confirm is not " + norm + "."})
		return
	}
	ctx := r.Context()
	if err := s.recordAlone(ctx, r, v, privacyAction, http.StatusAccepted); err != nil {
		s.internal(w, r, err)
		return
	}
	e, err := svc.Erase(ctx, norm)
	if err != nil {
		s.recordAfter(ctx, r, v, privacyAction, http.StatusInternalServerError)
		s.internal(w, r, err)
		return
	}
	s.recordAfter(ctx, r, v, privacyAction, http.StatusOK)
	s.Logger.Info("console: an address was erased", "user", v.user.Username)
	d.Erased, d.Address = e, e.Address
	s.render(w, r, http.StatusOK, "privacy", page{Title: "Privacy requests: " + t.Name, User: v, CSRF: v.sess.CSRF,
		Notice: "The address was erased from every tenant.", Data: &d})
}
