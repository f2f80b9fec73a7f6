package console

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/heedmail/heed/admin"
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
	Next   uint64
	After  uint64
	Size   int
	Filter auditFilter
	// Cut: the filter matched less than a page in scanBudget records.
	Cut bool
}

// auditAll is the audit log of every tenant and of the relay, for
// operators: a tenant's user reads its own tenant's page only.
func (s *server) auditAll(w http.ResponseWriter, r *http.Request, v *visit) {
	if !v.operator() {
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
		s.badFilter(w, r, "audit", p, "That page does not exist: “after” must be a record's number.")
		return
	}
	var problem string
	if d.Filter, problem = parseAuditFilter(r.URL.Query()); problem != "" {
		s.badFilter(w, r, "audit", p, problem)
		return
	}
	if s.Audit != nil {
		f := d.Filter
		got, err := scan(r.Context(), d.After, logPage, func(ctx context.Context, after uint64, n int) ([]admin.AuditRecord, error) {
			return s.Audit.Records(ctx, id, after, n)
		}, func(a admin.AuditRecord) uint64 { return a.Seq }, f.keep,
			// The audit log is written in time order, to within a
			// moment: a record past the end means the rest are too.
			func(a admin.AuditRecord) bool { return !f.To.IsZero() && a.Time.After(f.To.Add(events.TimeSlack)) })
		if err != nil {
			s.internal(w, r, err)
			return
		}
		d.Records, d.Next, d.Cut = got.Rows, got.Next, got.Cut
	}
	s.render(w, r, http.StatusOK, "audit", p)
}

type eventsData struct {
	Tenant tenant.Tenant
	Events []events.Event
	Next   uint64
	After  uint64
	Size   int
	Filter eventFilter
	Cut    bool
	// Stream is the URL of the page's live tail ("": none, the page is
	// not the last or its filter ends in the past).
	Stream string
	// Types are the event types, for the filter's choice.
	Types []events.Type
}

// eventsPage is the tenant's event log, oldest first, a page at a time,
// with its live tail on the last page.
func (s *server) eventsPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	d := eventsData{Tenant: t, Size: logPage, Types: events.AllTypes}
	p := page{Title: "Events: " + t.Name, User: v, CSRF: v.sess.CSRF, Data: &d}
	var err error
	if d.After, err = after(r); err != nil {
		s.badFilter(w, r, "events", p, "That page does not exist: “after” must be an event's number.")
		return
	}
	var problem string
	if d.Filter, problem = parseEventFilter(r.URL.Query()); problem != "" {
		s.badFilter(w, r, "events", p, problem)
		return
	}
	if s.Events == nil {
		s.render(w, r, http.StatusOK, "events", p)
		return
	}
	ctx := r.Context()
	start := d.After
	if !d.Filter.From.IsZero() {
		from, err := s.Events.Since(ctx, d.Filter.From)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		start = max(start, from)
	}
	f := d.Filter
	got, err := scan(ctx, start, logPage, func(ctx context.Context, after uint64, n int) ([]events.Event, error) {
		return s.Events.Events(ctx, t.ID, after, n)
	}, func(e events.Event) uint64 { return e.Seq }, f.keep, f.past)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	d.Events, d.Next, d.Cut = got.Rows, got.Next, got.Cut
	if d.Next == 0 && f.To.IsZero() && s.tail != nil {
		q := f.Query()
		q.Set("after", strconv.FormatUint(got.Cursor, 10))
		d.Stream = tenantPath(t.ID) + "/events/stream?" + q.Encode()
	}
	s.render(w, r, http.StatusOK, "events", p)
}
