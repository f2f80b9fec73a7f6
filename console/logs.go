package console

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/access"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// logPage is the most records or events one page of the Audit log or
// Events page shows; the rest are behind its "next" link.
const logPage = 50

// errAfter is a ?after= that is not a sequence number.
var errAfter = errors.New("after is not a sequence number")

// after is the ?after= of a log page: the seq of the last row of the
// page before (0: from the start).
func after(r *http.Request) (uint64, error) {
	a := r.URL.Query().Get("after")
	if a == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, errAfter
	}
	return n, nil
}

type auditData struct {
	// Tenant is the tenant whose records these are (nil: every tenant's).
	Tenant  *tenant.Tenant
	Records []admin.AuditRecord
	// Next is the ?after= of the next page (0: this is the last).
	Next  uint64
	After uint64
	Size  int
}

// auditAll is the audit log of every tenant and of the relay, for
// operators: a tenant's user reads its own tenant's page only.
func (s *server) auditAll(w http.ResponseWriter, r *http.Request, v *visit) {
	if access.Check(v.principal(), access.Operator, "") != nil {
		s.fail(w, r, http.StatusForbidden, "Only an operator may do this.")
		return
	}
	s.auditPage(w, r, v, nil)
}

// auditTenant is one tenant's audit log; scoped has checked the user may
// read the tenant (another tenant's answers as a missing one).
func (s *server) auditTenant(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	s.auditPage(w, r, v, &t)
}

func (s *server) auditPage(w http.ResponseWriter, r *http.Request, v *visit, t *tenant.Tenant) {
	d := auditData{Tenant: t, Size: logPage}
	title, id := "Audit log", ""
	if t != nil {
		title, id = "Audit log: "+t.Name, t.ID
	}
	p := page{Title: title, User: v, CSRF: v.sess.CSRF, Data: &d}
	var err error
	if d.After, err = after(r); err != nil {
		p.Problem = "That page does not exist: “after” must be a record's number."
		s.render(w, r, http.StatusBadRequest, "audit", p)
		return
	}
	if s.Audit != nil {
		// One more than a page tells whether there is a next page.
		if d.Records, err = s.Audit.Records(r.Context(), id, d.After, logPage+1); err != nil {
			s.internal(w, r, err)
			return
		}
		if len(d.Records) > logPage {
			d.Records = d.Records[:logPage]
			d.Next = d.Records[logPage-1].Seq
		}
	}
	s.render(w, r, http.StatusOK, "audit", p)
}

type eventsData struct {
	Tenant tenant.Tenant
	Events []events.Event
	Next   uint64
	After  uint64
	Size   int
}

// eventsPage is the tenant's event log, oldest first, a page at a time.
func (s *server) eventsPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	d := eventsData{Tenant: t, Size: logPage}
	p := page{Title: "Events: " + t.Name, User: v, CSRF: v.sess.CSRF, Data: &d}
	var err error
	if d.After, err = after(r); err != nil {
		p.Problem = "That page does not exist: “after” must be an event's number."
		s.render(w, r, http.StatusBadRequest, "events", p)
		return
	}
	if s.Events != nil {
		if d.Events, err = s.Events.Events(r.Context(), t.ID, d.After, logPage+1); err != nil {
			s.internal(w, r, err)
			return
		}
		if len(d.Events) > logPage {
			d.Events = d.Events[:logPage]
			d.Next = d.Events[logPage-1].Seq
		}
	}
	s.render(w, r, http.StatusOK, "events", p)
}
