package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// perm is what a route requires of the caller.
type perm int

const (
	// public routes need no token (probes).
	public perm = iota
	// operator routes need an operator token. Tenant API keys (a later
	// issue) will add a perm for routes a tenant may call on itself.
	operator
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

		{http.MethodPost, "/api/v1/tenants", operator, s.createTenant},
		{http.MethodGet, "/api/v1/tenants", operator, s.listTenants},
		{http.MethodGet, t, operator, s.scoped(s.getTenant)},
		{http.MethodPatch, t, operator, s.scoped(s.patchTenant)},
		{http.MethodDelete, t, operator, s.scoped(s.deleteTenant)},

		{http.MethodPost, t + "/credentials", operator, s.scoped(s.createCredential)},
		{http.MethodGet, t + "/credentials", operator, s.scoped(s.listCredentials)},
		{http.MethodDelete, t + "/credentials/:id", operator, s.scoped(s.deleteCredential)},

		{http.MethodPost, t + "/domains", operator, s.scoped(s.createDomain)},
		{http.MethodGet, t + "/domains", operator, s.scoped(s.listDomains)},
		{http.MethodGet, t + "/domains/:domain", operator, s.scoped(s.getDomain)},
		{http.MethodDelete, t + "/domains/:domain", operator, s.scoped(s.deleteDomain)},
		{http.MethodPost, t + "/domains/:domain/keys", operator, s.scoped(s.createKey)},
		{http.MethodGet, t + "/domains/:domain/keys/:selector", operator, s.scoped(s.getKey)},
		{http.MethodPost, t + "/domains/:domain/keys/:selector/activate", operator, s.scoped(s.activateKey)},
		{http.MethodDelete, t + "/domains/:domain/keys/:selector", operator, s.scoped(s.deleteKey)},

		{http.MethodPut, t + "/lists/:list", operator, s.scoped(s.putList)},
		{http.MethodGet, t + "/lists", operator, s.scoped(s.listLists)},
		{http.MethodGet, t + "/lists/:list", operator, s.scoped(s.getList)},

		{http.MethodGet, t + "/suppressions", operator, s.scoped(s.listSuppressions)},
		{http.MethodPut, t + "/suppressions/:address", operator, s.scoped(s.putSuppression)},
		{http.MethodDelete, t + "/suppressions/:address", operator, s.scoped(s.deleteSuppression)},

		{http.MethodPut, t + "/webhook", operator, s.scoped(s.putWebhook)},
		{http.MethodGet, t + "/webhook", operator, s.scoped(s.withEndpoint(s.getWebhook))},
		{http.MethodDelete, t + "/webhook", operator, s.scoped(s.withEndpoint(s.deleteWebhook))},
		{http.MethodPost, t + "/webhooks", operator, s.scoped(s.createWebhook)},
		{http.MethodGet, t + "/webhooks", operator, s.scoped(s.listWebhooks)},
		{http.MethodGet, t + "/webhooks/:endpoint", operator, s.scoped(s.withEndpoint(s.getWebhook))},
		{http.MethodPatch, t + "/webhooks/:endpoint", operator, s.scoped(s.withEndpoint(s.patchWebhook))},
		{http.MethodDelete, t + "/webhooks/:endpoint", operator, s.scoped(s.withEndpoint(s.deleteWebhook))},
		{http.MethodPost, t + "/webhooks/:endpoint/rotate", operator, s.scoped(s.withEndpoint(s.rotateWebhook))},
		{http.MethodGet, t + "/webhooks/:endpoint/deliveries", operator, s.scoped(s.withEndpoint(s.listDeliveries))},
		{http.MethodGet, t + "/webhooks/:endpoint/deliveries/:event", operator, s.scoped(s.withEndpoint(s.getDelivery))},
		{http.MethodPost, t + "/webhooks/:endpoint/deliveries/:event/resend", operator, s.scoped(s.withEndpoint(s.resendDelivery))},
		{http.MethodPost, t + "/webhooks/:endpoint/replay", operator, s.scoped(s.withEndpoint(s.replayWebhook))},
		{http.MethodGet, "/api/v1/webhook-dead-letters", operator, s.listDeadLetters},

		{http.MethodGet, t + "/events", operator, s.scoped(s.listEvents)},
		{http.MethodGet, "/api/v1/messages/:id", operator, s.getMessage},
		{http.MethodGet, "/api/v1/captured", operator, s.listCaptured},
		{http.MethodGet, "/api/v1/captured/:id", operator, s.getCaptured},
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
	return path == "/api/v1" || strings.HasPrefix(path, "/api/v1/")
}

// principal is who made a request.
type principal struct{ operator bool }

const ctxPrincipal = "heed.principal"

// authenticate checks the bearer token and records the principal. A
// missing token and a wrong one are both 401, with WWW-Authenticate as RFC
// 6750 section 3 asks.
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
		if !s.isOperator(token) {
			s.Logger.Info("admin: rejected token", "remote", c.RealIP(), "path", c.Request().URL.Path)
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="heed", error="invalid_token"`)
			return &apiError{http.StatusUnauthorized, "the bearer token is not valid"}
		}
		c.Set(ctxPrincipal, principal{operator: true})
		return next(c)
	}
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

// require wraps h with the check of perm.
func (s *server) require(p perm, h echo.HandlerFunc) echo.HandlerFunc {
	if p == public {
		return h
	}
	return func(c echo.Context) error {
		who, ok := c.Get(ctxPrincipal).(principal)
		if !ok {
			return &apiError{http.StatusUnauthorized, "send Authorization: Bearer <token>"}
		}
		if p == operator && !who.operator {
			return &apiError{http.StatusForbidden, "this endpoint needs an operator token"}
		}
		return h(c)
	}
}
