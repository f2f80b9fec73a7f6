package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/webhooks"
	"github.com/labstack/echo/v4"
)

const (
	defaultDeliveryLimit = 100
	maxDeliveryLimit     = 1000
)

// endpointView is an endpoint as clients see it: the secrets by their
// first characters only, the secret itself once, at creation or rotation.
type endpointView struct {
	ID          string        `json:"id"`
	URL         string        `json:"url"`
	Types       []events.Type `json:"types"`
	Description string        `json:"description,omitempty"`
	State       string        `json:"state"`
	Reason      string        `json:"reason,omitempty"`
	Secret      string        `json:"secret,omitempty"`
	Secrets     []secretView  `json:"secrets"`
	CreatedAt   time.Time     `json:"created_at"`
	UpdatedAt   time.Time     `json:"updated_at"`
}

type secretView struct {
	Prefix  string    `json:"prefix"`
	Expires time.Time `json:"expires,omitzero"`
}

func viewEndpoint(ep *webhooks.Endpoint, secret string) endpointView {
	v := endpointView{
		ID: ep.ID, URL: ep.URL, Types: ep.Types, Description: ep.Description,
		State: string(ep.State), Reason: ep.Reason, Secret: secret,
		CreatedAt: ep.CreatedAt, UpdatedAt: ep.UpdatedAt, Secrets: []secretView{},
	}
	if v.Types == nil {
		v.Types = []events.Type{}
	}
	for _, s := range ep.Secrets {
		v.Secrets = append(v.Secrets, secretView{Prefix: s.Prefix, Expires: s.Expires})
	}
	return v
}

// viewDelivery is a delivery as clients see it: one held for a paused or
// disabled endpoint shows no next attempt (it goes out when the endpoint
// recovers), and no attempts is an empty list, not null.
func viewDelivery(d webhooks.Delivery) webhooks.Delivery {
	if d.NextAttempt.Equal(webhooks.Hold) {
		d.NextAttempt = time.Time{}
	}
	if d.Attempts == nil {
		d.Attempts = []webhooks.Attempt{}
	}
	return d
}

func (s *server) hooks() (*webhooks.Manager, error) {
	if s.Webhooks == nil {
		return nil, notFound("webhooks are not available")
	}
	return s.Webhooks, nil
}

// hookError maps the webhooks package's errors.
func hookError(err error) error {
	switch {
	case errors.Is(err, webhooks.ErrNotFound):
		return notFound("%s", trimPkg(err))
	case errors.Is(err, webhooks.ErrExists):
		return conflict("an endpoint of that id exists")
	case errors.Is(err, webhooks.ErrInvalid):
		return invalid("%s", trimPkg(err))
	}
	return err
}

// trimPkg drops the "webhooks: not found: " style prefix of a sentinel.
func trimPkg(err error) string {
	msg := err.Error()
	for _, p := range []string{"webhooks: invalid: ", "webhooks: not found: ", "webhooks: "} {
		if rest, ok := strings.CutPrefix(msg, p); ok && rest != "" {
			return rest
		}
	}
	return msg
}

func endpointID(c echo.Context) (string, error) {
	id := c.Param("endpoint")
	if webhooks.CheckID(id) != nil {
		return "", notFound("no webhook endpoint %q", id)
	}
	return id, nil
}

// putWebhook sets the tenant's default endpoint (contract.md): created
// with its secret (201), or its URL and types changed (200).
func (s *server) putWebhook(c echo.Context, t tenant.Tenant) error {
	m, err := s.hooks()
	if err != nil {
		return err
	}
	var in webhooks.Input
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	var (
		ep     *webhooks.Endpoint
		secret string
	)
	status, err := s.change(c, func(ctx context.Context) (int, error) {
		var created bool
		var err error
		ep, secret, created, err = m.Put(ctx, t.ID, webhooks.DefaultEndpoint, in)
		if created {
			return http.StatusCreated, err
		}
		return http.StatusOK, err
	})
	if err != nil {
		return hookError(err)
	}
	return c.JSON(status, viewEndpoint(ep, secret))
}

func (s *server) createWebhook(c echo.Context, t tenant.Tenant) error {
	m, err := s.hooks()
	if err != nil {
		return err
	}
	var in struct {
		ID string `json:"id"`
		webhooks.Input
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	var (
		ep     *webhooks.Endpoint
		secret string
	)
	_, err = s.change(c, func(ctx context.Context) (status int, err error) {
		ep, secret, err = m.Create(ctx, t.ID, in.ID, in.Input)
		return http.StatusCreated, err
	})
	if err != nil {
		return hookError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, c.Request().URL.Path+"/"+ep.ID)
	return c.JSON(http.StatusCreated, viewEndpoint(ep, secret))
}

func (s *server) listWebhooks(c echo.Context, t tenant.Tenant) error {
	m, err := s.hooks()
	if err != nil {
		return err
	}
	eps, err := m.Store.Endpoints(c.Request().Context(), t.ID)
	if err != nil {
		return err
	}
	out := []endpointView{}
	for i := range eps {
		out = append(out, viewEndpoint(&eps[i], ""))
	}
	return c.JSON(http.StatusOK, struct {
		Endpoints []endpointView `json:"endpoints"`
	}{out})
}

// withEndpoint resolves the endpoint id of the path (the default endpoint
// for the contract's /webhook routes).
func (s *server) withEndpoint(h func(echo.Context, tenant.Tenant, *webhooks.Manager, string) error) func(echo.Context, tenant.Tenant) error {
	return func(c echo.Context, t tenant.Tenant) error {
		m, err := s.hooks()
		if err != nil {
			return err
		}
		id := webhooks.DefaultEndpoint
		if c.Param("endpoint") != "" {
			if id, err = endpointID(c); err != nil {
				return err
			}
		}
		return h(c, t, m, id)
	}
}

func (s *server) getWebhook(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	ep, err := m.Store.Endpoint(c.Request().Context(), t.ID, id)
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusOK, viewEndpoint(ep, ""))
}

func (s *server) patchWebhook(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	var p webhooks.Patch
	if err := decodeJSON(c, &p); err != nil {
		return err
	}
	var ep *webhooks.Endpoint
	_, err := s.change(c, func(ctx context.Context) (status int, err error) {
		ep, err = m.Update(ctx, t.ID, id, p)
		return http.StatusOK, err
	})
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusOK, viewEndpoint(ep, ""))
}

func (s *server) deleteWebhook(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	if _, err := s.change(c, func(ctx context.Context) (int, error) {
		return http.StatusNoContent, m.Delete(ctx, t.ID, id)
	}); err != nil {
		return hookError(err)
	}
	return c.NoContent(http.StatusNoContent)
}

// rotateWebhook gives the endpoint a new secret; the old one signs
// alongside for grace (default 24h).
func (s *server) rotateWebhook(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	var in struct {
		Grace string `json:"grace"`
	}
	if err := decodeJSON(c, &in); err != nil && !errors.Is(err, errEmptyBody) {
		return err
	}
	var grace time.Duration
	if in.Grace != "" {
		var err error
		if grace, err = time.ParseDuration(in.Grace); err != nil || grace <= 0 {
			return invalid("grace must be a positive duration such as \"24h\", not %q", in.Grace)
		}
	}
	var (
		ep     *webhooks.Endpoint
		secret string
	)
	_, err := s.change(c, func(ctx context.Context) (status int, err error) {
		ep, secret, err = m.Rotate(ctx, t.ID, id, grace)
		return http.StatusOK, err
	})
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusOK, viewEndpoint(ep, secret))
}

type deliveryList struct {
	Deliveries []webhooks.Delivery `json:"deliveries"`
	Next       string              `json:"next,omitempty"`
}

func viewDeliveries(ds []webhooks.Delivery, next string) deliveryList {
	out := deliveryList{Deliveries: []webhooks.Delivery{}, Next: next}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, viewDelivery(d))
	}
	return out
}

// listDeliveries lists an endpoint's deliveries, newest first;
// ?status=failed lists its dead letters.
func (s *server) listDeliveries(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	status := webhooks.Status(c.QueryParam("status"))
	switch status {
	case "", webhooks.Pending, webhooks.Retrying, webhooks.Delivered, webhooks.Failed:
	default:
		return invalid("status must be pending, retrying, delivered or failed, not %q", status)
	}
	limit, err := queryLimit(c, defaultDeliveryLimit, maxDeliveryLimit)
	if err != nil {
		return err
	}
	ds, next, err := m.Store.Deliveries(c.Request().Context(), t.ID, id, status, c.QueryParam("cursor"), limit)
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusOK, viewDeliveries(ds, next))
}

func (s *server) getDelivery(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	d, err := m.Delivery(c.Request().Context(), t.ID, id, c.Param("event"))
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusOK, viewDelivery(*d))
}

// resendDelivery sends one event to the endpoint again, with its id.
func (s *server) resendDelivery(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	var d *webhooks.Delivery
	_, err := s.change(c, func(ctx context.Context) (status int, err error) {
		d, err = m.Resend(ctx, t.ID, id, c.Param("event"))
		return http.StatusAccepted, err
	})
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusAccepted, viewDelivery(*d))
}

// replayWebhook sends every event of a time range to the endpoint again.
func (s *server) replayWebhook(c echo.Context, t tenant.Tenant, m *webhooks.Manager, id string) error {
	var in struct {
		Since time.Time `json:"since"`
		Until time.Time `json:"until"`
	}
	if err := decodeJSON(c, &in); err != nil {
		return err
	}
	if in.Since.IsZero() {
		return invalid("since is required (RFC 3339)")
	}
	if in.Until.IsZero() {
		in.Until = s.now()
	}
	// A replay schedules in batches of its own transactions (begin).
	if err := s.begin(c); err != nil {
		return err
	}
	n, err := m.Replay(c.Request().Context(), t.ID, id, in.Since, in.Until)
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusAccepted, struct {
		Scheduled int `json:"scheduled"`
	}{n})
}

// listDeadLetters lists failed deliveries of every tenant, or of
// ?tenant= (operator only).
func (s *server) listDeadLetters(c echo.Context) error {
	m, err := s.hooks()
	if err != nil {
		return err
	}
	limit, err := queryLimit(c, defaultDeliveryLimit, maxDeliveryLimit)
	if err != nil {
		return err
	}
	tid := c.QueryParam("tenant")
	if tid != "" && tenant.ValidID(tid) != nil {
		return invalid("tenant %q is not a tenant id", tid)
	}
	ds, next, err := m.Store.DeadLetters(c.Request().Context(), tid, c.QueryParam("cursor"), limit)
	if err != nil {
		return hookError(err)
	}
	return c.JSON(http.StatusOK, viewDeliveries(ds, next))
}
