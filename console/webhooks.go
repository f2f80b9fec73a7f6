package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/webhooks"
)

// The Webhooks pages: a tenant's endpoints and each one's deliveries.
// Every change is the webhooks.Manager call the admin API's handler
// makes (admin/webhooks.go), with the Manager's own checks, and is
// audited as the API route it stands for.

const (
	// waitingCap bounds the events counted as waiting for an endpoint, so
	// that a page stays quick whatever the backlog.
	waitingCap = 10000
	// deliveriesPage is the most deliveries an endpoint's page lists;
	// the last success and failure are read among as many.
	deliveriesPage = 50
)

// hookNotices are the confirmations a redirect after a change asks for,
// by code, so that the query string cannot put words on the page.
var hookNotices = map[string]string{
	"removed": "The endpoint was removed: it gets no more events, and its deliveries are forgotten.",
	"resent":  "The event is scheduled to be sent again, with its webhook-id; its row below shows the attempt once it is made.",
}

// endpointRow is an endpoint with what its pages show of its health.
type endpointRow struct {
	webhooks.Endpoint
	// Waiting counts the events not yet handed to it (at most
	// waitingCap; More says there are more).
	Waiting int
	More    bool
	// LastSuccess and LastFailure are the newest attempts of each kind
	// among its deliveriesPage newest deliveries; Failure is the latter.
	LastSuccess time.Time
	LastFailure time.Time
	Failure     webhooks.Attempt
}

type webhooksData struct {
	Tenant    tenant.Tenant
	Endpoints []endpointRow
	Types     []events.Type
	Write     bool
	// Secret is a new endpoint's signing secret, shown once, with the
	// endpoint it signs for.
	Secret, SecretOf string
	// URL and Description are the create form's values after a refusal.
	URL, Description string
}

// deliveryRow is a delivery with its newest attempt.
type deliveryRow struct {
	webhooks.Delivery
	Last *webhooks.Attempt
	// Held: it waits for the endpoint to be active again.
	Held bool
}

type webhookData struct {
	Tenant     tenant.Tenant
	Endpoint   endpointRow
	Deliveries []deliveryRow
	// Status filters the deliveries ("": all; "failed": dead letters).
	Status   webhooks.Status
	Statuses []webhooks.Status
	// Cursor is this page's, Next the next page's ("": last page).
	Cursor, Next string
	Write        bool
	// Since and Until are the replay form's values.
	Since, Until string
}

// hooks is the webhook manager, or a 404 page on a console without one.
func (s *server) hooks(w http.ResponseWriter, r *http.Request) (*webhooks.Manager, bool) {
	if s.Webhooks == nil {
		s.fail(w, r, http.StatusNotFound, "Webhooks are not available.")
		return nil, false
	}
	return s.Webhooks, true
}

func webhooksPath(t tenant.Tenant) string { return tenantPath(t.ID) + "/webhooks" }

func endpointPath(t tenant.Tenant, id string) string {
	return webhooksPath(t) + "/" + url.PathEscape(id)
}

// webhooksPage lists the tenant's endpoints with their health.
func (s *server) webhooksPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	s.renderWebhooks(w, r, v, t, http.StatusOK, page{Notice: hookNotices[r.URL.Query().Get("done")]}, webhooksData{})
}

func (s *server) renderWebhooks(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, status int, p page, d webhooksData) {
	m, ok := s.hooks(w, r)
	if !ok {
		return
	}
	eps, err := m.Store.Endpoints(r.Context(), t.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	d.Tenant, d.Types, d.Write = t, events.AllTypes, canWrite(v, t)
	for _, ep := range eps {
		row, _, _, err := s.endpointRow(r.Context(), m, ep, "", "")
		if err != nil {
			s.internal(w, r, err)
			return
		}
		d.Endpoints = append(d.Endpoints, row)
	}
	p.Title, p.User, p.CSRF, p.Data = "Webhooks: "+t.Name, v, v.sess.CSRF, &d
	s.render(w, r, status, "webhooks", p)
}

// endpointRow reads ep's health, and the page of its deliveries of
// status after cursor (newest first), with the next page's cursor.
func (s *server) endpointRow(ctx context.Context, m *webhooks.Manager, ep webhooks.Endpoint, status webhooks.Status, cursor string) (endpointRow, []webhooks.Delivery, string, error) {
	row := endpointRow{Endpoint: ep}
	n, err := m.Waiting(ctx, &ep, waitingCap)
	if err != nil {
		return row, nil, "", err
	}
	row.Waiting, row.More = n, n >= waitingCap
	recent, next, err := m.Store.Deliveries(ctx, ep.Tenant, ep.ID, "", "", deliveriesPage)
	if err != nil {
		return row, nil, "", err
	}
	for _, d := range recent {
		for _, a := range d.Attempts {
			ok := a.StatusCode >= 200 && a.StatusCode < 300 && a.Error == ""
			switch {
			case ok && a.At.After(row.LastSuccess):
				row.LastSuccess = a.At
			case !ok && a.At.After(row.LastFailure):
				row.LastFailure, row.Failure = a.At, a
			}
		}
	}
	if status == "" && cursor == "" {
		return row, recent, next, nil // the first page is the recent one
	}
	ds, next, err := m.Store.Deliveries(ctx, ep.Tenant, ep.ID, status, cursor, deliveriesPage)
	return row, ds, next, err
}

// withEndpoint resolves the endpoint of the path among the tenant's: an
// id of another tenant's endpoint is one this tenant does not have.
func (s *server) withEndpoint(h func(http.ResponseWriter, *http.Request, *visit, tenant.Tenant, *webhooks.Manager, *webhooks.Endpoint)) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
		m, ok := s.hooks(w, r)
		if !ok {
			return
		}
		id := r.PathValue("endpoint")
		if webhooks.CheckID(id) != nil {
			s.fail(w, r, http.StatusNotFound, noEndpoint)
			return
		}
		ep, err := m.Store.Endpoint(r.Context(), t.ID, id)
		if errors.Is(err, webhooks.ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, noEndpoint)
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		h(w, r, v, t, m, ep)
	}
}

const noEndpoint = "There is no such webhook endpoint."

// endpointPage shows an endpoint and its deliveries, newest first, a
// page at a time, all or of one status (failed: the dead letters).
func (s *server) endpointPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, m *webhooks.Manager, ep *webhooks.Endpoint) {
	s.renderEndpoint(w, r, v, t, m, ep, http.StatusOK, page{Notice: hookNotices[r.URL.Query().Get("done")]}, webhookData{})
}

func (s *server) renderEndpoint(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, m *webhooks.Manager, ep *webhooks.Endpoint, status int, p page, d webhookData) {
	q := r.URL.Query()
	d.Tenant, d.Write, d.Cursor = t, canWrite(v, t), q.Get("cursor")
	d.Statuses = []webhooks.Status{webhooks.Failed, webhooks.Retrying, webhooks.Pending, webhooks.Delivered}
	p.Title, p.User, p.CSRF, p.Data = "Webhook "+ep.ID+": "+t.Name, v, v.sess.CSRF, &d
	switch st := webhooks.Status(q.Get("status")); st {
	case "", webhooks.Pending, webhooks.Retrying, webhooks.Delivered, webhooks.Failed:
		d.Status = st
	default:
		p.Problem = "There is no delivery status “" + string(st) + "”: all deliveries are shown."
	}
	row, ds, next, err := s.endpointRow(r.Context(), m, *ep, d.Status, d.Cursor)
	if errors.Is(err, webhooks.ErrInvalid) {
		p.Problem, d.Cursor = "That page of deliveries does not exist: the first page is shown.", ""
		row, ds, next, err = s.endpointRow(r.Context(), m, *ep, d.Status, "")
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	d.Endpoint, d.Next = row, next
	for _, dl := range ds {
		dr := deliveryRow{Delivery: dl, Held: dl.NextAttempt.Equal(webhooks.Hold)}
		if n := len(dl.Attempts); n > 0 {
			dr.Last = &dl.Attempts[n-1]
		}
		d.Deliveries = append(d.Deliveries, dr)
	}
	s.render(w, r, status, "webhook", p)
}

// hookChange names a change of an endpoint as its API route.
func hookChange(t tenant.Tenant, method, route, id string) changeOf {
	return changeOf{t.ID, method + " /api/v1/tenants/:tenant/webhooks" + route,
		"/api/v1/tenants/" + t.ID + "/webhooks" + strings.ReplaceAll(route, "/:endpoint", "/"+id)}
}

// createWebhook is POST …/webhooks: the endpoint is made with the
// Manager's checks (the URL's, the types', the tenant's limit) and its
// secret is shown on the page that answers, once.
func (s *server) createWebhook(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	m, ok := s.hooks(w, r)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	in := webhooks.Input{URL: strings.TrimSpace(r.PostFormValue("url")), Description: strings.TrimSpace(r.PostFormValue("description"))}
	for _, ty := range r.PostForm["types"] {
		in.Types = append(in.Types, events.Type(ty))
	}
	var (
		ep     *webhooks.Endpoint
		secret string
	)
	c := hookChange(t, http.MethodPost, "", "")
	_, err := s.change(r.Context(), r, v, c, func(ctx context.Context) (int, error) {
		var err error
		ep, secret, err = m.Create(ctx, t.ID, "", in)
		return http.StatusCreated, err
	})
	if err != nil {
		s.hookRefused(w, r, v, t, err, webhooksData{URL: in.URL, Description: in.Description})
		return
	}
	s.renderWebhooks(w, r, v, t, http.StatusCreated, page{}, webhooksData{Secret: secret, SecretOf: ep.URL})
}

// hookRefused shows the webhooks page with the Manager's refusal of a
// change, or the internal error it was.
func (s *server) hookRefused(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, err error, d webhooksData) {
	if !errors.Is(err, webhooks.ErrInvalid) && !errors.Is(err, webhooks.ErrExists) {
		s.internal(w, r, err)
		return
	}
	s.renderWebhooks(w, r, v, t, http.StatusUnprocessableEntity, page{Problem: "Not saved: " + refusal(err)}, d)
}

// refusal is the webhooks package's sentence without its prefix.
func refusal(err error) string {
	msg := err.Error()
	for _, p := range []string{"webhooks: invalid: ", "webhooks: not found: ", "webhooks: "} {
		if rest, ok := strings.CutPrefix(msg, p); ok && rest != "" {
			return rest
		}
	}
	return msg
}

// deleteWebhook is DELETE …/webhooks/{endpoint}, once the endpoint's id
// is typed into the box beside the button.
func (s *server) deleteWebhook(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, m *webhooks.Manager, ep *webhooks.Endpoint) {
	if !same(ep.ID, strings.TrimSpace(r.PostFormValue("confirm"))) {
		s.renderEndpoint(w, r, v, t, m, ep, http.StatusBadRequest,
			page{Problem: "Nothing was removed: to remove the endpoint, type " + ep.ID + " in the box beside its button."}, webhookData{})
		return
	}
	c := hookChange(t, http.MethodDelete, "/:endpoint", ep.ID)
	if _, err := s.change(r.Context(), r, v, c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, m.Delete(ctx, t.ID, ep.ID)
	}); err != nil {
		s.internal(w, r, err)
		return
	}
	http.Redirect(w, r, webhooksPath(t)+"?done=removed", http.StatusSeeOther)
}

// resendDelivery is POST …/deliveries/{event}/resend: one event of the
// tenant, by its id or number, sent to the endpoint again.
func (s *server) resendDelivery(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, m *webhooks.Manager, ep *webhooks.Endpoint) {
	ref := strings.TrimSpace(r.PostFormValue("event"))
	if ref == "" || len(ref) > 100 {
		s.renderEndpoint(w, r, v, t, m, ep, http.StatusBadRequest, page{Problem: "Give the event's id (evt_…) or number."}, webhookData{})
		return
	}
	c := hookChange(t, http.MethodPost, "/:endpoint/deliveries/:event/resend", ep.ID)
	c.target = strings.Replace(c.target, "/:event/", "/"+url.PathEscape(ref)+"/", 1)
	_, err := s.change(r.Context(), r, v, c, func(ctx context.Context) (int, error) {
		_, err := m.Resend(ctx, t.ID, ep.ID, ref)
		return http.StatusAccepted, err
	})
	if errors.Is(err, webhooks.ErrNotFound) {
		s.renderEndpoint(w, r, v, t, m, ep, http.StatusNotFound, page{Problem: "Nothing was resent: " + t.Name + " has no event " + ref + "."}, webhookData{})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	http.Redirect(w, r, endpointPath(t, ep.ID)+"?done=resent", http.StatusSeeOther)
}

// replayWebhook is POST …/webhooks/{endpoint}/replay: every event of
// [since, until) the endpoint takes is sent again. As the API's replay,
// it is scheduled in many transactions: a record before the first
// (202) and one of how it ended after the last.
func (s *server) replayWebhook(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant, m *webhooks.Manager, ep *webhooks.Endpoint) {
	d := webhookData{Since: strings.TrimSpace(r.PostFormValue("since")), Until: strings.TrimSpace(r.PostFormValue("until"))}
	since, err := formTime(d.Since)
	if err != nil || since.IsZero() {
		s.renderEndpoint(w, r, v, t, m, ep, http.StatusBadRequest, page{Problem: "Nothing was replayed: “from” must be a time, like 2025-11-22T00:00 (UTC)."}, d)
		return
	}
	until, err := formTime(d.Until)
	if err != nil {
		s.renderEndpoint(w, r, v, t, m, ep, http.StatusBadRequest, page{Problem: "Nothing was replayed: “until” must be a time, like 2025-11-23T00:00 (UTC), or empty for now."}, d)
		return
	}
	if until.IsZero() {
		until = s.Now().UTC()
	}
	ctx := r.Context()
	c := hookChange(t, http.MethodPost, "/:endpoint/replay", ep.ID)
	if err := s.recordAlone(ctx, r, v, c, http.StatusAccepted); err != nil {
		s.internal(w, r, err)
		return
	}
	n, err := m.Replay(ctx, t.ID, ep.ID, since, until)
	status := http.StatusAccepted
	switch {
	case errors.Is(err, webhooks.ErrInvalid):
		status = http.StatusUnprocessableEntity
	case errors.Is(err, webhooks.ErrNotFound):
		status = http.StatusNotFound
	case err != nil:
		status = http.StatusInternalServerError
	}
	s.recordAfter(ctx, r, v, c, status)
	switch status {
	case http.StatusAccepted:
		s.renderEndpoint(w, r, v, t, m, ep, http.StatusOK, page{Notice: replayed(n)}, d)
	case http.StatusInternalServerError:
		s.internal(w, r, err)
	default:
		s.renderEndpoint(w, r, v, t, m, ep, status, page{Problem: "Nothing was replayed: " + refusal(err)}, d)
	}
}

func replayed(n int) string {
	if n == 0 {
		return "No event of that span is one the endpoint takes: nothing was scheduled."
	}
	return strconv.Itoa(n) + " event" + plural(n) + " scheduled to be sent again, each with its webhook-id."
}

// formTime reads a time of a form: RFC 3339, or a datetime-local field's
// value (taken as UTC, as the form says), or a day; "" is the zero time.
func formTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	var err error
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		var t time.Time
		if t, err = time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}
