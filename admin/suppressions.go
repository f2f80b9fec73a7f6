package admin

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
	"github.com/labstack/echo/v4"
)

const (
	defaultSuppressionLimit = 100
	maxSuppressionLimit     = 1000
)

// suppressionsStore returns the store or the 404 of a relay without one.
func (s *server) suppressionsStore() (suppression.Store, error) {
	if s.Suppressions == nil {
		return nil, notFound("the suppression list is not available")
	}
	return s.Suppressions, nil
}

// pathAddress is the address in the path, decoded once and normalised.
// echo hands the parameter over still escaped when the request path had
// escapes (it routes on the raw path), and decoded otherwise.
func pathAddress(c echo.Context) (string, error) {
	raw := c.Param("address")
	if c.Request().URL.RawPath != "" {
		var err error
		if raw, err = url.PathUnescape(raw); err != nil {
			return "", invalid("the address in the path is not URL-encoded correctly")
		}
	}
	addr, err := suppression.Normalize(raw)
	if err != nil {
		return "", invalid("address: %v", err)
	}
	return addr, nil
}

// suppressionTarget is the store and the normalised address in the path.
func (s *server) suppressionTarget(c echo.Context) (suppression.Store, string, error) {
	st, err := s.suppressionsStore()
	if err != nil {
		return nil, "", err
	}
	addr, err := pathAddress(c)
	return st, addr, err
}

// scopeOf checks a scope: "*" or one of the tenant's lists.
func (s *server) scopeOf(c echo.Context, t tenant.Tenant, scope string) error {
	if scope == suppression.All {
		return nil
	}
	_, err := s.Tenants.List(c.Request().Context(), t.ID, scope)
	if errors.Is(err, tenant.ErrNotFound) {
		return invalid("list: tenant %q has no list %q (use a list id, or \"*\" for every list)", t.ID, scope)
	}
	return err
}

func (s *server) listSuppressions(c echo.Context, t tenant.Tenant) error {
	st, err := s.suppressionsStore()
	if err != nil {
		return err
	}
	limit := defaultSuppressionLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSuppressionLimit {
			return invalid("limit must be an integer from 1 to %d, not %q", maxSuppressionLimit, v)
		}
		limit = n
	}
	es, next, err := st.List(c.Request().Context(), t.ID, c.QueryParam("list"), c.QueryParam("cursor"), limit)
	if errors.Is(err, suppression.ErrInvalid) {
		return invalid("%v", err)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, struct {
		Suppressions []suppression.Entry `json:"suppressions"`
		Cursor       string              `json:"cursor,omitempty"`
	}{nonNil(es), next})
}

// putSuppression adds an entry: 201 when new, 200 when it was there.
func (s *server) putSuppression(c echo.Context, t tenant.Tenant) error {
	st, addr, err := s.suppressionTarget(c)
	if err != nil {
		return err
	}
	var req struct {
		List   string `json:"list"`
		Reason string `json:"reason"`
	}
	if err := decodeJSON(c, &req); err != nil && !errors.Is(err, errEmptyBody) {
		return err // an empty body (none, or chunked with nothing) takes the defaults
	}
	if req.List == "" {
		req.List = suppression.All
	}
	if req.Reason == "" {
		req.Reason = string(suppression.Manual)
	}
	reason, err := suppression.ParseReason(req.Reason)
	if err != nil {
		return invalid("reason: %v", err)
	}
	if err := s.scopeOf(c, t, req.List); err != nil {
		return err
	}
	e := suppression.Entry{Tenant: t.ID, Address: addr, List: req.List, Reason: reason, Channel: "api", Time: s.now()}
	created, err := st.Add(c.Request().Context(), e)
	if errors.Is(err, suppression.ErrInvalid) {
		return invalid("%v", err)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	// Show what is stored (a bounce or complaint is always for every list).
	if reason == suppression.Bounce || reason == suppression.Complaint {
		e.List = suppression.All
	}
	entries, err := st.Lookup(c.Request().Context(), t.ID, addr)
	if err != nil {
		return err
	}
	for _, got := range entries {
		if got.List == e.List && got.Reason == e.Reason {
			e = got
		}
	}
	return c.JSON(status, e)
}

// deleteSuppression removes entries of an address: of one scope with
// ?list=, of one reason with ?reason=. Without ?reason= it removes only
// bounces (the usual request: the mailbox works again) and keeps what a
// person or the operator decided — opt-outs, imports, complaints, manual
// blocks — which go only when named (?reason=unsubscribe, e.g. when the
// recipient resubscribed through the tenant): clearing a bounce must not
// resume mail to someone who opted out or reported spam.
func (s *server) deleteSuppression(c echo.Context, t tenant.Tenant) error {
	st, addr, err := s.suppressionTarget(c)
	if err != nil {
		return err
	}
	var only suppression.Reason
	if v := c.QueryParam("reason"); v != "" {
		if only, err = suppression.ParseReason(v); err != nil {
			return invalid("reason: %v", err)
		}
	}
	scope := c.QueryParam("list")
	if scope != "" && scope != suppression.All && tenant.ValidID(scope) != nil {
		return invalid("list: %q is neither a list id nor \"*\"", scope)
	}
	ctx := c.Request().Context()
	entries, err := st.Lookup(ctx, t.ID, addr)
	if err != nil {
		return err
	}
	removed, kept := false, false
	for _, e := range entries {
		if scope != "" && e.List != scope || only != "" && e.Reason != only {
			continue
		}
		if only == "" && e.Reason != suppression.Bounce {
			kept = true
			continue
		}
		ok, err := st.Remove(ctx, t.ID, addr, e.List, e.Reason)
		if err != nil {
			return err
		}
		removed = removed || ok
	}
	if !removed {
		if kept {
			return conflict("%s has no bounce for tenant %q here, only entries a person or operator decided (opt-out, complaint, manual block); "+
				"they are removed only when named: add ?reason=unsubscribe (or import, complaint, manual)", addr, t.ID)
		}
		return notFound("%s is not suppressed for tenant %q", addr, t.ID)
	}
	return c.NoContent(http.StatusNoContent)
}
