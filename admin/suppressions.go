package admin

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

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
	limit, err := queryLimit(c, defaultSuppressionLimit, maxSuppressionLimit)
	if err != nil {
		return err
	}
	f, err := suppressionFilter(c)
	if err != nil {
		return err
	}
	// Reason and since filter the pages the store reads (by list); a page
	// may then hold fewer than limit while cursor says there is more.
	es, next, err := st.List(c.Request().Context(), t.ID, f.List, c.QueryParam("cursor"), limit)
	if errors.Is(err, suppression.ErrInvalid) {
		return invalid("%v", err)
	}
	if err != nil {
		return err
	}
	es = slices.DeleteFunc(es, func(e suppression.Entry) bool { return !f.Keeps(e) })
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
	status, err := s.change(c, func(ctx context.Context) (int, error) {
		created, err := st.Add(ctx, e)
		if created {
			return http.StatusCreated, err
		}
		return http.StatusOK, err
	})
	if errors.Is(err, suppression.ErrInvalid) {
		return invalid("%v", err)
	}
	if err != nil {
		return err
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
	// The entries removed are the ones read in the same transaction
	// (suppression.Lift, the rule the console's remove button shares).
	_, err = s.change(c, func(ctx context.Context) (int, error) {
		l, err := suppression.Lift(ctx, st, t.ID, addr, scope, only)
		switch {
		case err != nil:
			return 0, err
		case !l.Removed && l.Kept:
			return 0, conflict("%s has no bounce for tenant %q here, only entries a person or operator decided (opt-out, complaint, manual block); "+
				"they are removed only when named: add ?reason=unsubscribe (or import, complaint, manual)", addr, t.ID)
		case !l.Removed:
			return 0, notFound("%s is not suppressed for tenant %q", addr, t.ID)
		}
		return http.StatusNoContent, nil
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// maxImportBody bounds a CSV import's body (about ten million rows).
const maxImportBody = 1 << 30

// importSuppressions streams a CSV body (header address[,list,reason])
// into the tenant's list and answers the per-row report; ?dry_run=true
// validates without writing.
func (s *server) importSuppressions(c echo.Context, t tenant.Tenant) error {
	st, err := s.suppressionsStore()
	if err != nil {
		return err
	}
	imp, ok := st.(suppression.Importer)
	if !ok {
		return notFound("importing is not available")
	}
	req := c.Request()
	if mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType)); err != nil || mt != "text/csv" {
		return &apiError{http.StatusUnsupportedMediaType, "send the CSV with Content-Type: text/csv"}
	}
	dry := false
	if v := c.QueryParam("dry_run"); v != "" {
		if dry, err = strconv.ParseBool(v); err != nil {
			return invalid("dry_run must be true or false, not %q", v)
		}
	}
	ctx := req.Context()
	lists, err := s.Tenants.Lists(ctx, t.ID)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, l := range lists {
		known[l.ID] = true
	}
	if !dry {
		// Written in many transactions of a batch each: a record before
		// the first and one of the answer after the last (begin).
		if err := s.begin(c); err != nil {
			return err
		}
	}
	body := http.MaxBytesReader(c.Response(), req.Body, maxImportBody)
	rep, err := suppression.ImportCSV(ctx, imp, t.ID, body, suppression.ImportOptions{
		DryRun: dry,
		CheckList: func(id string) error {
			if !known[id] {
				return fmt.Errorf("tenant %q has no list %q", t.ID, id)
			}
			return nil
		},
	})
	// What the audit log records: nothing for a dry run.
	changed(c, !dry)
	var big *http.MaxBytesError
	switch {
	case errors.As(err, &big):
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the CSV exceeds %d bytes; split it (rows before the limit were imported: %d added)", int64(maxImportBody), rep.Added)}
	case errors.Is(err, suppression.ErrInvalid):
		return invalid("%v (rows before it were imported: %d added, %d existing)", err, rep.Added, rep.Existing)
	case err != nil:
		return err
	}
	rep.Errors = nonNil(rep.Errors)
	return c.JSON(http.StatusOK, struct {
		DryRun bool `json:"dry_run"`
		suppression.ImportReport
	}{dry, rep})
}

// exportSuppressions streams the tenant's list as CSV, filtered by ?list=,
// ?reason= and ?since= (RFC 3339).
func (s *server) exportSuppressions(c echo.Context, t tenant.Tenant) error {
	st, err := s.suppressionsStore()
	if err != nil {
		return err
	}
	o, err := suppressionFilter(c)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+t.ID+`-suppressions.csv"`)
	h.Set(echo.HeaderCacheControl, "no-store")
	// The 200 goes with the first bytes of the CSV, so that what fails
	// before them (a malformed ?list=, a first page unread) is an error.
	_, err = suppression.ExportCSV(c.Request().Context(), st, t.ID, c.Response(), o)
	switch {
	case err == nil:
		return nil
	case !c.Response().Committed:
		h.Del(echo.HeaderContentType) // a problem (ErrInvalid: 400), not a file
		h.Del(echo.HeaderContentDisposition)
		return err
	}
	// The status is sent: cut the body short, so the client sees an
	// incomplete transfer rather than a short list.
	s.Logger.Error("admin: suppression export cut short", "tenant", t.ID, "err", err)
	panic(http.ErrAbortHandler)
}

// suppressionFilter reads ?list=, ?reason= and ?since=.
func suppressionFilter(c echo.Context) (suppression.ExportOptions, error) {
	var o suppression.ExportOptions
	o.List = c.QueryParam("list")
	if v := c.QueryParam("reason"); v != "" {
		r, err := suppression.ParseReason(v)
		if err != nil {
			return o, invalid("%v", err)
		}
		o.Reason = r
	}
	if v := c.QueryParam("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, invalid("since must be an RFC 3339 time, like 2025-11-23T00:00:00Z, not %q", v)
		}
		o.Since = t
	}
	return o, nil
}

// getSuppression shows the entries of one address, with their evidence
// (when, through which channel, after which message); 404 when there is
// none.
func (s *server) getSuppression(c echo.Context, t tenant.Tenant) error {
	st, addr, err := s.suppressionTarget(c)
	if err != nil {
		return err
	}
	es, err := st.Lookup(c.Request().Context(), t.ID, addr)
	if err != nil {
		return err
	}
	if len(es) == 0 {
		return notFound("%s is not on the suppression list of %s", addr, t.ID)
	}
	return c.JSON(http.StatusOK, struct {
		Suppressions []suppression.Entry `json:"suppressions"`
	}{es})
}
