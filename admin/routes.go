package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/heedmail/heed/internal/access"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"

	"github.com/labstack/echo/v4"
)

// perm is what a route requires of the caller.
type perm int

const (
	// public routes need no token (probes).
	public perm = iota
	// operator routes need an operator token.
	operator
	// tenantRead routes take an operator token or an API key of the
	// tenant in the path.
	tenantRead
	// tenantWrite routes take an operator token or a read-write API key of
	// the tenant in the path.
	tenantWrite
	// keyRead routes take an operator token or any API key; the handler
	// shows a key its own tenant's data only.
	keyRead
)

type route struct {
	method, path string
	perm         perm
	handler      echo.HandlerFunc
}

// routes is the whole API, in one table.
func (s *server) routes() []route {
	const t = "/api/v1/tenants/:tenant"
	return []route{
		{http.MethodGet, "/healthz", public, s.healthz},
		{http.MethodGet, "/readyz", public, s.readyz},
		{http.MethodGet, "/metrics", operator, s.metrics},
		{http.MethodGet, "/api/v1/openapi.json", public, s.openapi},

		{http.MethodPost, "/api/v1/tenants", operator, s.createTenant},
		{http.MethodGet, "/api/v1/tenants", operator, s.listTenants},
		{http.MethodGet, t, tenantRead, s.scoped(s.getTenant)},
		{http.MethodPatch, t, tenantWrite, s.scoped(s.patchTenant)},
		{http.MethodDelete, t, operator, s.scoped(s.deleteTenant)},
		{http.MethodGet, t + "/reputation", tenantRead, s.scoped(s.getReputation)},
		{http.MethodPost, t + "/pause", operator, s.scoped(s.pauseTenant)},
		{http.MethodPost, t + "/resume", operator, s.scoped(s.resumeTenant)},

		{http.MethodPost, t + "/credentials", tenantWrite, s.scoped(s.createCredential)},
		{http.MethodGet, t + "/credentials", tenantRead, s.scoped(s.listCredentials)},
		{http.MethodDelete, t + "/credentials/:id", tenantWrite, s.scoped(s.deleteCredential)},

		{http.MethodPost, t + "/api-keys", operator, s.scoped(s.createAPIKey)},
		{http.MethodGet, t + "/api-keys", tenantRead, s.scoped(s.listAPIKeys)},
		{http.MethodDelete, t + "/api-keys/:id", operator, s.scoped(s.deleteAPIKey)},

		{http.MethodPost, t + "/domains", operator, s.scoped(s.createDomain)},
		{http.MethodGet, t + "/domains", tenantRead, s.scoped(s.listDomains)},
		{http.MethodGet, t + "/domains/:domain", tenantRead, s.scoped(s.getDomain)},
		{http.MethodGet, t + "/domains/:domain/readiness", tenantRead, s.scoped(s.getReadiness)},
		{http.MethodDelete, t + "/domains/:domain", operator, s.scoped(s.deleteDomain)},
		{http.MethodPost, t + "/domains/:domain/keys", tenantWrite, s.scoped(s.createKey)},
		{http.MethodGet, t + "/domains/:domain/keys/:selector", tenantRead, s.scoped(s.getKey)},
		{http.MethodPost, t + "/domains/:domain/keys/:selector/activate", tenantWrite, s.scoped(s.activateKey)},
		{http.MethodDelete, t + "/domains/:domain/keys/:selector", tenantWrite, s.scoped(s.deleteKey)},

		{http.MethodPut, t + "/lists/:list", tenantWrite, s.scoped(s.putList)},
		{http.MethodGet, t + "/lists", tenantRead, s.scoped(s.listLists)},
		{http.MethodGet, t + "/lists/:list", tenantRead, s.scoped(s.getList)},

		{http.MethodGet, t + "/suppressions", tenantRead, s.scoped(s.listSuppressions)},
		{http.MethodPost, t + "/suppressions/import", tenantWrite, s.scoped(s.importSuppressions)},
		{http.MethodGet, t + "/suppressions/export", tenantRead, s.scoped(s.exportSuppressions)},
		{http.MethodGet, t + "/suppressions/:address", tenantRead, s.scoped(s.getSuppression)},
		{http.MethodPut, t + "/suppressions/:address", tenantWrite, s.scoped(s.putSuppression)},
		{http.MethodDelete, t + "/suppressions/:address", tenantWrite, s.scoped(s.deleteSuppression)},

		{http.MethodPut, t + "/webhook", tenantWrite, s.scoped(s.putWebhook)},
		{http.MethodGet, t + "/webhook", tenantRead, s.scoped(s.withEndpoint(s.getWebhook))},
		{http.MethodDelete, t + "/webhook", tenantWrite, s.scoped(s.withEndpoint(s.deleteWebhook))},
		{http.MethodPost, t + "/webhooks", tenantWrite, s.scoped(s.createWebhook)},
		{http.MethodGet, t + "/webhooks", tenantRead, s.scoped(s.listWebhooks)},
		{http.MethodGet, t + "/webhooks/:endpoint", tenantRead, s.scoped(s.withEndpoint(s.getWebhook))},
		{http.MethodPatch, t + "/webhooks/:endpoint", tenantWrite, s.scoped(s.withEndpoint(s.patchWebhook))},
		{http.MethodDelete, t + "/webhooks/:endpoint", tenantWrite, s.scoped(s.withEndpoint(s.deleteWebhook))},
		{http.MethodPost, t + "/webhooks/:endpoint/rotate", tenantWrite, s.scoped(s.withEndpoint(s.rotateWebhook))},
		{http.MethodGet, t + "/webhooks/:endpoint/deliveries", tenantRead, s.scoped(s.withEndpoint(s.listDeliveries))},
		{http.MethodGet, t + "/webhooks/:endpoint/deliveries/:event", tenantRead, s.scoped(s.withEndpoint(s.getDelivery))},
		{http.MethodPost, t + "/webhooks/:endpoint/deliveries/:event/resend", tenantWrite, s.scoped(s.withEndpoint(s.resendDelivery))},
		{http.MethodPost, t + "/webhooks/:endpoint/replay", tenantWrite, s.scoped(s.withEndpoint(s.replayWebhook))},
		{http.MethodGet, "/api/v1/webhook-dead-letters", operator, s.listDeadLetters},

		{http.MethodGet, t + "/events", tenantRead, s.scoped(s.listEvents)},
		{http.MethodGet, "/api/v1/messages/:id", keyRead, s.getMessage},
		{http.MethodGet, "/api/v1/captured", operator, s.listCaptured},
		{http.MethodGet, "/api/v1/captured/:id", operator, s.getCaptured},
		{http.MethodGet, "/api/v1/reports/unread", operator, s.listUnread},
		{http.MethodGet, "/api/v1/reports/unread/:id", operator, s.getUnread},
		{http.MethodDelete, "/api/v1/reports/unread/:id", operator, s.deleteUnread},
		{http.MethodGet, "/api/v1/audit", keyRead, s.listAudit},
		{http.MethodGet, "/api/v1/backup", operator, s.backup},
		{http.MethodGet, "/api/v1/privacy/:address", operator, s.exportPrivacy},
		{http.MethodDelete, "/api/v1/privacy/:address", operator, s.erasePrivacy},
	}
}

// register adds the route table to e. Authentication runs before routing
// for every path under /api/v1, so unknown paths and methods there need a
// token too and echo's router still answers 404 and 405 on its own; each
// route's wrapper then checks its perm.
func (s *server) register(e *echo.Echo) {
	e.Pre(s.authenticate)
	for _, r := range s.routes() {
		e.Add(r.method, r.path, s.require(r.perm, r.handler))
	}
}

// needsAuth reports whether a request path is under /api/v1. echo routes
// on the raw path when there is one; the decoded path starts with /api/v1/
// whenever the raw one does.
func needsAuth(path string) bool {
	if path == "/api/v1/openapi.json" {
		return false
	}
	return path == "/metrics" || path == "/api/v1" || strings.HasPrefix(path, "/api/v1/")
}

// principal is who made a request.
type principal struct {
	operator bool
	// tenant and access are an API key's.
	tenant, access string
	// actor names the caller in the audit log.
	actor string
}

const ctxPrincipal = "heed.principal"

// whoIs is the request's principal (the zero one before authentication).
func whoIs(c echo.Context) principal {
	who, _ := c.Get(ctxPrincipal).(principal)
	return who
}

// authenticate checks the bearer token, an operator token or a tenant's
// API key, and records the principal. A missing token and a wrong one are
// both 401, with WWW-Authenticate as RFC 6750 section 3 asks.
func (s *server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !needsAuth(c.Request().URL.Path) {
			return next(c)
		}
		scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="heed"`)
			return &apiError{http.StatusUnauthorized, "send Authorization: Bearer <token>"}
		}
		var who principal
		switch {
		case s.isOperator(token):
			sum := sha256.Sum256([]byte(token))
			who = principal{operator: true, actor: "operator:" + hex.EncodeToString(sum[:4])}
		case strings.HasPrefix(token, tenant.APIKeyPrefix):
			key, err := s.Tenants.AuthenticateAPIKey(c.Request().Context(), token)
			if err != nil && !errors.Is(err, tenant.ErrBadCredentials) {
				return err
			}
			if err == nil {
				who = principal{tenant: key.Tenant, access: key.Access, actor: "api_key:" + key.ID}
			}
		}
		if who.actor == "" {
			path := c.Request().URL.Path
			if strings.HasPrefix(path, "/api/v1/privacy/") {
				path = "/api/v1/privacy/" + events.Erased // an address; not for the logs
			}
			s.Logger.Info("admin: rejected token", "remote", remoteIP(c), "path", path)
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="heed", error="invalid_token"`)
			return &apiError{http.StatusUnauthorized, "the bearer token is not valid"}
		}
		c.Set(ctxPrincipal, who)
		return next(c)
	}
}

// remoteIP is the client's address as the listener saw it (headers such
// as X-Forwarded-For are the client's to forge).
func remoteIP(c echo.Context) string {
	host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
	if err != nil {
		return c.Request().RemoteAddr
	}
	return host
}

// isOperator compares token's digest with every operator token's, in
// constant time and without stopping at a match.
func (s *server) isOperator(token string) bool {
	sum := sha256.Sum256([]byte(token))
	match := 0
	for _, d := range s.operators {
		match |= subtle.ConstantTimeCompare(sum[:], d[:])
	}
	return match == 1
}

// require wraps h with the check of perm and, for a change that
// succeeded, its audit record.
func (s *server) require(p perm, h echo.HandlerFunc) echo.HandlerFunc {
	if p == public {
		return h
	}
	return func(c echo.Context) error {
		who, ok := c.Get(ctxPrincipal).(principal)
		if !ok {
			return &apiError{http.StatusUnauthorized, "send Authorization: Bearer <token>"}
		}
		if err := allowed(who, p, c.Param("tenant")); err != nil {
			return err
		}
		err := h(c)
		if done, _ := c.Get(ctxAudited).(bool); done {
			return err // recorded in the change's transaction (change)
		}
		switch changed, _ := c.Get(ctxChanged).(*bool); {
		case changed != nil && *changed: // the handler says so (a change then an error)
			s.auditStatus(c, who, answered(c, err))
		case changed == nil && err == nil && changes(c.Request().Method) && c.Response().Status < 400:
			s.audit(c, who)
		}
		return err
	}
}

// needs maps a route's perm to what access.Check asks for; keyRead is
// checked by its handler.
var needs = map[perm]access.Need{operator: access.Operator, tenantRead: access.TenantRead, tenantWrite: access.TenantWrite}

// allowed checks who against p with access.Check, the rule the console
// applies to its users too, and words its refusal for an API client.
func allowed(who principal, p perm, id string) error {
	need, ok := needs[p]
	if !ok {
		return nil
	}
	switch err := access.Check(access.Principal{Operator: who.operator, Tenant: who.tenant, Access: who.access}, need, id); {
	case errors.Is(err, access.ErrOperatorOnly):
		return &apiError{http.StatusForbidden, "this endpoint needs an operator token"}
	case errors.Is(err, access.ErrNoTenant):
		return notFound("no tenant %q", id)
	case errors.Is(err, access.ErrReadOnly):
		return &apiError{http.StatusForbidden, "this API key is read-only"}
	}
	return nil
}

const ctxChanged = "heed.changed"

// answered is the status of the answer to a request whose handler
// returned err: the written one, or the one handleError will write.
func answered(c echo.Context, err error) int {
	if err == nil || c.Response().Committed {
		return c.Response().Status
	}
	if p := problemFor(err); p.Status != 0 {
		return p.Status
	}
	return http.StatusInternalServerError
}

// changed tells require whether the request changed something, where the
// method and status do not say it: a dry run changes nothing; an import
// that failed half-way, or a tenant deleted before its clean-up failed,
// did change something.
func changed(c echo.Context, yes bool) { c.Set(ctxChanged, &yes) }

// changes reports whether a request of method changes something.
func changes(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// audit records one change that succeeded. The response is already
// written: a record that cannot be stored is logged with everything it
// would have held.
func (s *server) audit(c echo.Context, who principal) {
	s.auditStatus(c, who, c.Response().Status)
}

// auditStatus records the request with status, for a handler that keeps
// a record of what it refuses before the refusal is written.
func (s *server) auditStatus(c echo.Context, who principal, status int) {
	if s.Audit == nil {
		return
	}
	r := s.record(c, who, status)
	if err := s.Audit.Append(context.WithoutCancel(c.Request().Context()), r); err != nil {
		s.Logger.Error("admin: the audit record of a change could not be stored", "err", err,
			"actor", r.Actor, "action", r.Action, "target", r.Target, "status", r.Status, "remote", r.RemoteIP)
	}
}

// metrics serves the Prometheus metrics to an operator token (Prometheus
// sends it with authorization: { credentials: ... }): they name every
// tenant and count its mail, and tenants' API keys reach this listener.
func (s *server) metrics(c echo.Context) error {
	if s.Metrics == nil {
		return notFound("metrics are not available")
	}
	s.Metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}

// backup streams a consistent copy of the database while Heed serves
// (heed backup -api); the copy opens as a data directory's heed.db.
func (s *server) backup(c echo.Context) error {
	if s.Backup == nil {
		if s.BackupElsewhere != "" {
			return &apiError{http.StatusNotImplemented, s.BackupElsewhere}
		}
		return notFound("backups are not available")
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/octet-stream")
	h.Set(echo.HeaderContentDisposition, `attachment; filename="heed.db"`)
	h.Set(echo.HeaderCacheControl, "no-store")
	_, err := s.Backup(c.Response(), func(n int64) {
		h.Set(echo.HeaderContentLength, strconv.FormatInt(n, 10))
		c.Response().WriteHeader(http.StatusOK)
	})
	if err != nil {
		s.Logger.Error("admin: backup cut short", "err", err)
		panic(http.ErrAbortHandler) // the client sees a short transfer, not a short file
	}
	return nil
}
