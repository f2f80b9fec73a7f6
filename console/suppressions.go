package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

type suppressionsData struct {
	Tenant   tenant.Tenant
	Address  string // as searched for, normalised when valid
	Searched bool
	Entries  []suppression.Entry
	Lists    []tenant.List
	Reasons  []suppression.Reason
	// Write: the user may change this tenant's list.
	Write bool
}

// notices are the confirmations a redirect after a change asks for, by
// code, so that the query string cannot put words on the page.
var notices = map[string]string{
	"added":              "The address was added to the suppression list.",
	"exists":             "The address was already suppressed for that list and reason.",
	"removed":            "The entry was removed: mail to the address resumes unless another entry stops it.",
	"tenant-created":     "The tenant was created, with its default lists.",
	"tenant-saved":       "The tenant's name and postal address were saved.",
	"list-saved":         "The list was saved.",
	"credential-created": "The network credential was created: mail from it needs no AUTH.",
	"credential-revoked": "The credential was revoked: it no longer sends mail.",
	"api-key-revoked":    "The API key was revoked: it no longer opens the API.",
	"domain-added":       "The domain was added with its keys: publish the records below, then check its readiness.",
	"key-published":      "The new key was made: publish its TXT record, check it below, then activate it.",
	"key-activated":      "The key signs the domain's mail now; the key it replaced is retired (keep its record until mail signed with it is old).",
	"key-deleted":        "The key was deleted: remove its TXT record from the DNS.",
}

// suppressions is the search by address: every entry of the address with
// its evidence, and the forms to add and remove.
func (s *server) suppressions(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	ctx := r.Context()
	d := suppressionsData{Tenant: t, Reasons: []suppression.Reason{suppression.Manual, suppression.Unsubscribe, suppression.Bounce, suppression.Complaint, suppression.Import},
		Write: canWrite(v, t)}
	lists, err := s.Tenants.Lists(ctx, t.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	d.Lists = lists
	p := page{Title: "Suppressions: " + t.Name, User: v, CSRF: v.sess.CSRF, Notice: notices[r.URL.Query().Get("done")], Data: &d}
	if q := r.URL.Query().Get("address"); q != "" {
		d.Address, d.Searched = q, true
		addr, err := suppression.Normalize(q)
		if err != nil {
			p.Problem = "That is not an email address: " + err.Error()
			s.render(w, r, http.StatusBadRequest, "suppressions", p)
			return
		}
		d.Address = addr
		if s.Suppressions == nil {
			s.fail(w, r, http.StatusNotFound, "The suppression list is not available.")
			return
		}
		if d.Entries, err = s.Suppressions.Lookup(ctx, t.ID, addr); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	s.render(w, r, http.StatusOK, "suppressions", p)
}

// back redirects to the search of addr with a notice code.
func back(w http.ResponseWriter, r *http.Request, t tenant.Tenant, addr, done string) {
	q := url.Values{"address": {addr}, "done": {done}}
	http.Redirect(w, r, Prefix+"tenants/"+url.PathEscape(t.ID)+"/suppressions?"+q.Encode(), http.StatusSeeOther)
}

// addSuppression adds an entry as the API's PUT does: a scope of "*" or
// one of the tenant's lists, a reason (manual by default).
func (s *server) addSuppression(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	ctx := r.Context()
	addr, err := suppression.Normalize(r.PostFormValue("address"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "That is not an email address: "+err.Error())
		return
	}
	scope := r.PostFormValue("list")
	if scope == "" {
		scope = suppression.All
	}
	if scope != suppression.All {
		if _, err := s.Tenants.List(ctx, t.ID, scope); err != nil {
			s.fail(w, r, http.StatusBadRequest, "The tenant has no such list.")
			return
		}
	}
	reason := suppression.Manual
	if v := r.PostFormValue("reason"); v != "" {
		if reason, err = suppression.ParseReason(v); err != nil {
			s.fail(w, r, http.StatusBadRequest, "Unknown reason: "+err.Error())
			return
		}
	}
	e := suppression.Entry{Tenant: t.ID, Address: addr, List: scope, Reason: reason, Channel: "console", Time: s.Now().UTC()}
	status, err := s.change(ctx, r, v, addressChange(http.MethodPut, t, addr), func(ctx context.Context) (int, error) {
		created, err := s.Suppressions.Add(ctx, e)
		if created {
			return http.StatusCreated, err
		}
		return http.StatusOK, err
	})
	if errors.Is(err, suppression.ErrInvalid) {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	done := "exists"
	if status == http.StatusCreated {
		done = "added"
	}
	back(w, r, t, addr, done)
}

// removeSuppression removes entries through suppression.Lift, the API's
// rule: the form names the entry's list and reason; an entry a person or
// the operator decided (not a bounce) goes only with the box ticked that
// says the recipient asked for the mail again.
func (s *server) removeSuppression(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	ctx := r.Context()
	addr, err := suppression.Normalize(r.PostFormValue("address"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "That is not an email address: "+err.Error())
		return
	}
	scope := r.PostFormValue("list")
	if scope != "" && scope != suppression.All && tenant.ValidID(scope) != nil {
		s.fail(w, r, http.StatusBadRequest, "That is not a list.")
		return
	}
	var only suppression.Reason
	if v := r.PostFormValue("reason"); v != "" {
		if only, err = suppression.ParseReason(v); err != nil {
			s.fail(w, r, http.StatusBadRequest, "Unknown reason: "+err.Error())
			return
		}
	}
	if only != "" && only != suppression.Bounce && r.PostFormValue("confirm") != "yes" {
		s.fail(w, r, http.StatusConflict, "This entry was decided by a person (an opt-out, complaint, import or manual block). "+
			"Remove it only when the recipient asked to get this mail again, and tick the box that says so.")
		return
	}
	// The entries removed are the ones read in the same transaction.
	_, err = s.change(ctx, r, v, addressChange(http.MethodDelete, t, addr), func(ctx context.Context) (int, error) {
		l, err := suppression.Lift(ctx, s.Suppressions, t.ID, addr, scope, only)
		if err == nil && !l.Removed {
			err = errNoEntry // nothing changed: no record either
		}
		return http.StatusNoContent, err
	})
	if errors.Is(err, errNoEntry) {
		s.fail(w, r, http.StatusNotFound, "There was no such entry to remove.")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	back(w, r, t, addr, "removed")
}

// errNoEntry rolls back a removal that found nothing to remove.
var errNoEntry = errors.New("no such entry")

// addressChange is a change of one address's entries: the route it
// stands for, and the address in its normalised form.
func addressChange(method string, t tenant.Tenant, addr string) changeOf {
	return changeOf{t.ID, method + " /api/v1/tenants/:tenant/suppressions/:address", "/api/v1/tenants/" + t.ID + "/suppressions/" + addr}
}
