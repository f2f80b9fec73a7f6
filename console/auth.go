package console

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"mime/multipart"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/access"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/tenant"
)

// The cookies: the session's token, and before sign-in the token the
// sign-in form repeats (a double-submit token, so that another site
// cannot sign a browser in to its own account: login CSRF).
const (
	sessionCookie = "heed_console"
	preCookie     = "heed_console_pre"
)

// visit is a signed-in request: the session and its user.
type visit struct {
	sess consoleusers.Session
	user consoleusers.User
	// form is the rest of a multipart form after its CSRF token (nil for
	// other requests).
	form *multipart.Reader
}

// principal is the user as internal/access sees it: the same rule as for
// an API key of the user's tenant with the same access.
func (v *visit) principal() access.Principal {
	return access.Principal{Operator: v.user.Operator, Tenant: v.user.Tenant, Access: v.user.Access}
}

// operator reports whether the user may do an operator's actions, by
// internal/access's rule (the API's), not by reading the account.
func (v *visit) operator() bool { return access.Check(v.principal(), access.Operator, "") == nil }

// actor names the user in the audit log.
func (v *visit) actor() string { return "console:" + v.user.Username }

// setCookie sets a cookie of the console: HttpOnly, SameSite=Strict, and
// Secure unless the client is on loopback (make run's browser over plain
// http; anywhere else the console must be reached over TLS).
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: !clientIP(r).IsLoopback(),
	})
}

func cookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// same compares two tokens in constant time; an empty one never matches.
func same(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// throttled takes a sign-in attempt from the client's and the user's
// allowance and, when either is spent, says how long to wait. It is asked
// before the password or code is checked, so that a refused attempt
// learns nothing. The client a user last signed in from is held to the
// client's allowance only: otherwise anyone who knows a username (a
// tenant's user knows their operator's) could keep its owner out by
// spending the user's allowance with wrong passwords from elsewhere.
func (s *server) throttled(r *http.Request, username string) (time.Duration, bool) {
	c := client(r)
	if ok, wait := s.byClient.Allow(c); !ok {
		return wait, true
	}
	if s.good.is(strings.ToLower(username), c) {
		return 0, false
	}
	if ok, wait := s.byUser.Allow(strings.ToLower(username)); !ok {
		return wait, true
	}
	return 0, false
}

// succeeded gives back the attempt throttled took for a step that was
// right: the limits count wrong guesses, and a person who signs in a few
// times in a window must not be refused for it.
func (s *server) succeeded(r *http.Request, username string) {
	c := client(r)
	s.byClient.Refund(c)
	if !s.good.is(strings.ToLower(username), c) {
		s.byUser.Refund(strings.ToLower(username))
	}
}

// lastGood is the client each username last completed a sign-in from,
// at most maxBuckets of them (past that an arbitrary one is forgotten:
// its user is then held to the username's allowance again, as before
// their first sign-in).
type lastGood struct {
	mu sync.Mutex
	m  map[string]netip.Addr
}

func (g *lastGood) is(username string, c netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.m[username]
	return ok && a == c
}

func (g *lastGood) set(username string, c netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[string]netip.Addr)
	}
	if _, ok := g.m[username]; !ok && len(g.m) >= maxBuckets {
		for k := range g.m {
			delete(g.m, k)
			break
		}
	}
	g.m[username] = c
}

func (s *server) tooMany(w http.ResponseWriter, r *http.Request, username string, wait time.Duration) {
	s.Logger.Warn("console: sign-in attempts over the limit", "user", username, "remote", clientIP(r))
	mins := int(math.Ceil(wait.Minutes()))
	w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
	s.fail(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many sign-in attempts. Try again in %d minute%s.", mins, plural(mins)))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// home sends a signed-in browser to the overview, others to sign in.
func (s *server) home(w http.ResponseWriter, r *http.Request) {
	if sess, _, err := s.Users.Session(r.Context(), cookie(r, sessionCookie)); err == nil && sess.Verified {
		http.Redirect(w, r, Prefix+"overview", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
}

func (s *server) signInPage(w http.ResponseWriter, r *http.Request) {
	s.renderSignIn(w, r, http.StatusOK, "", "")
}

func (s *server) renderSignIn(w http.ResponseWriter, r *http.Request, status int, username, problem string) {
	pre := ids.Secret(32)
	setCookie(w, r, preCookie, pre, 600)
	s.render(w, r, status, "signin", page{Title: "Sign in", CSRF: pre, Problem: problem, Data: username})
}

func (s *server) signIn(w http.ResponseWriter, r *http.Request) {
	if !same(cookie(r, preCookie), r.PostFormValue("csrf")) {
		s.fail(w, r, http.StatusForbidden, "The form has expired. Open the sign-in page again.")
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	if wait, ok := s.throttled(r, username); ok {
		s.tooMany(w, r, username, wait)
		return
	}
	token, _, err := s.Users.SignIn(r.Context(), username, r.PostFormValue("password"))
	if errors.Is(err, consoleusers.ErrBadCredentials) {
		s.Logger.Info("console: wrong password", "user", username, "remote", clientIP(r))
		s.renderSignIn(w, r, http.StatusUnauthorized, username, "Wrong username or password.")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.succeeded(r, username)
	setCookie(w, r, preCookie, "", -1)
	setCookie(w, r, sessionCookie, token, 0)
	http.Redirect(w, r, Prefix+"sign-in/code", http.StatusSeeOther)
}

// pending returns the session that waits for its code, or sends the
// browser back to the password.
func (s *server) pending(w http.ResponseWriter, r *http.Request) (consoleusers.Session, bool) {
	sess, _, err := s.Users.Session(r.Context(), cookie(r, sessionCookie))
	if err != nil || sess.Verified {
		if err != nil && !errors.Is(err, consoleusers.ErrNoSession) {
			s.internal(w, r, err)
			return sess, false
		}
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return sess, false
	}
	return sess, true
}

func (s *server) codePage(w http.ResponseWriter, r *http.Request) {
	if sess, ok := s.pending(w, r); ok {
		s.render(w, r, http.StatusOK, "code", page{Title: "Two-step verification", CSRF: sess.CSRF})
	}
}

func (s *server) code(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pending(w, r)
	if !ok {
		return
	}
	if !same(sess.CSRF, r.PostFormValue("csrf")) {
		s.fail(w, r, http.StatusForbidden, "The form has expired. Sign in again.")
		return
	}
	if wait, ok := s.throttled(r, sess.Username); ok {
		s.tooMany(w, r, sess.Username, wait)
		return
	}
	token, _, err := s.Users.Verify(r.Context(), cookie(r, sessionCookie), strings.TrimSpace(r.PostFormValue("code")))
	switch {
	case errors.Is(err, consoleusers.ErrBadCredentials):
		s.Logger.Info("console: wrong code", "user", sess.Username, "remote", clientIP(r))
		s.render(w, r, http.StatusUnauthorized, "code", page{Title: "Two-step verification", CSRF: sess.CSRF,
			Problem: "That code is not right, or was used already. Enter the current code."})
		return
	case errors.Is(err, consoleusers.ErrNoSession):
		http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	s.succeeded(r, sess.Username)
	s.good.set(strings.ToLower(sess.Username), client(r))
	s.Logger.Info("console: signed in", "user", sess.Username, "remote", clientIP(r))
	setCookie(w, r, sessionCookie, token, 0)
	http.Redirect(w, r, Prefix+"overview", http.StatusSeeOther)
}

// signedIn runs h for a signed-in session only, and for a POST only with
// the session's CSRF token (a synchroniser token: OWASP's CSRF cheat
// sheet); others are sent to sign in, or refused.
func (s *server) signedIn(h func(http.ResponseWriter, *http.Request, *visit)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, u, err := s.Users.Session(r.Context(), cookie(r, sessionCookie))
		if err != nil && !errors.Is(err, consoleusers.ErrNoSession) {
			s.internal(w, r, err)
			return
		}
		if err != nil || !sess.Verified {
			if r.Method != http.MethodGet {
				s.fail(w, r, http.StatusForbidden, "Your session has ended. Sign in again.")
				return
			}
			http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
			return
		}
		var form *multipart.Reader
		token := func() string { return r.PostFormValue("csrf") }
		if mr := multipartForm(w, r); r.Method != http.MethodGet && mr != nil {
			form = mr
			token = func() string { return formToken(mr) }
		}
		if r.Method != http.MethodGet && !same(sess.CSRF, token()) {
			s.Logger.Warn("console: a form without its session's token", "user", u.Username, "remote", clientIP(r), "path", r.URL.Path)
			s.fail(w, r, http.StatusForbidden, "The form has expired. Reload the page and try again.")
			return
		}
		h(w, r, &visit{sess: sess, user: u, form: form})
	}
}

func (s *server) signOut(w http.ResponseWriter, r *http.Request, v *visit) {
	if err := s.Users.SignOut(r.Context(), cookie(r, sessionCookie)); err != nil {
		s.internal(w, r, err)
		return
	}
	if s.tail != nil {
		s.tail.wakeAll() // the session's live tails end
	}
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"sign-in", http.StatusSeeOther)
}

// tenantRead and tenantWrite check the user against the tenant in the
// path with internal/access, as the API checks an API key. Another
// tenant's pages do not exist for a tenant's user: the answer is the 404
// of a tenant that does not exist, word for word.
func (s *server) tenantRead(h tenantHandler) func(http.ResponseWriter, *http.Request, *visit) {
	return s.scoped(access.TenantRead, h)
}

func (s *server) tenantWrite(h tenantHandler) func(http.ResponseWriter, *http.Request, *visit) {
	return s.scoped(access.TenantWrite, h)
}

type tenantHandler func(http.ResponseWriter, *http.Request, *visit, tenant.Tenant)

func (s *server) scoped(n access.Need, h tenantHandler) func(http.ResponseWriter, *http.Request, *visit) {
	return func(w http.ResponseWriter, r *http.Request, v *visit) {
		id := r.PathValue("tenant")
		switch err := access.Check(v.principal(), n, id); {
		case errors.Is(err, access.ErrNoTenant):
			s.Logger.Info("console: a user asked for another tenant", "user", v.user.Username, "tenant", id)
			s.fail(w, r, http.StatusNotFound, noTenant)
			return
		case errors.Is(err, access.ErrOperatorOnly):
			s.fail(w, r, http.StatusForbidden, "Only an operator may do this.")
			return
		case err != nil:
			s.fail(w, r, http.StatusForbidden, "Your account may only read this tenant's data.")
			return
		}
		if tenant.ValidID(id) != nil {
			s.fail(w, r, http.StatusNotFound, noTenant)
			return
		}
		t, err := s.Tenants.Tenant(r.Context(), id)
		if errors.Is(err, tenant.ErrNotFound) {
			s.fail(w, r, http.StatusNotFound, noTenant)
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		h(w, r, v, t)
	}
}

const noTenant = "There is no such tenant."
