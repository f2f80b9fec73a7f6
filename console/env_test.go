package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testclock"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

var nextLink = regexp.MustCompile(`href="(\?after=[0-9]+)" rel="next"`)

var hashKey = []byte("0123456789abcdef0123456789abcdef")

// env is a console over real stores in a bbolt file, served on loopback.
type env struct {
	t       *testing.T
	clock   *testclock.Clock
	db      *store.DB
	users   *consoleusers.Service
	tenants *tenant.Registry
	sup     *suppression.Service
	audit   *audit.Log
	queue   *queue.Records
	hooks   *webhooks.Manager
	srv     *httptest.Server
	secrets map[string]consoleusers.Enrolment
}

// newEnv starts the console with tenants acme and globex; o adjusts the
// options (the sign-in limits).
func newEnv(t *testing.T, o func(*console.Options)) *env {
	t.Helper()
	return newEnvOver(t, nil, o)
}

// newEnvOver is newEnv with the suppression list, the audit log and the
// changes' transactions over wrap of the bbolt backend (nil: as it is).
func newEnvOver(t *testing.T, wrap func(backend.Backend) backend.Backend, o func(*console.Options)) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	e := &env{t: t, clock: testclock.New(time.Now().UTC().Truncate(time.Second)), db: db, secrets: map[string]consoleusers.Enrolment{}}
	e.users, err = boltdb.ConsoleUsers(db, hashKey, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.users.WithParams(consoleusers.Params{Memory: 64, Time: 1, Threads: 1})
	e.tenants = tenant.NewRegistry(boltdb.Tenants(db))
	var b backend.Backend = boltdb.New(db)
	if wrap != nil {
		b = wrap(b)
	}
	e.sup = suppression.New(txn.Narrow(b, func(t backend.Tx) suppression.Tx { return t }), hashKey, e.clock.Now)
	e.queue = boltdb.Queue(db)
	e.audit = audit.New(txn.Narrow(b, func(t backend.Tx) audit.Rows { return t.Audit() }))
	sealer, err := webhooks.NewSealer(hashKey)
	if err != nil {
		t.Fatal(err)
	}
	e.hooks = &webhooks.Manager{Store: webhooks.New(txn.Narrow(b, func(t backend.Tx) webhooks.Tx { return t })),
		Events: boltdb.Events(db), Sealer: sealer, AllowPrivate: true, Now: e.clock.Now}
	ctx := context.Background()
	for _, tn := range []tenant.Tenant{
		{ID: "acme", Name: "Acme Dental", PostalAddress: "1 Main St", CreatedAt: e.clock.Now()},
		{ID: "globex", Name: "Globex Clinic", PostalAddress: "2 Side St", CreatedAt: e.clock.Now()},
	} {
		if err := e.tenants.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	opts := console.Options{
		Users: e.users, Tenants: e.tenants, Suppressions: e.sup, Events: boltdb.Events(db), Messages: e.queue,
		QueueDepth:     func() (int, error) { return 3, nil },
		WebhookBacklog: func(context.Context) (int, error) { return 0, nil },
		Audit:          e.audit, Changes: txn.Narrow(b, func(t backend.Tx) admin.Tx { return t }),
		Webhooks: e.hooks,
		Privacy: &privacy.Service{Suppressions: e.sup, Events: boltdb.Events(db), Queue: e.queue,
			Others: []privacy.Eraser{e.hooks.Store.(*webhooks.Service), e.audit}},
		MaxAttemptsPerUser: 5, MaxAttemptsPerClient: 20, AttemptWindow: 15 * time.Minute,
		Now: e.clock.Now,
	}
	if o != nil {
		o(&opts)
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, console.New(opts))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// user makes a console user and keeps its enrolment.
func (e *env) user(nu consoleusers.NewUser) consoleusers.Enrolment {
	e.t.Helper()
	en, err := e.users.AddUser(context.Background(), nu, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.secrets[nu.Username] = en
	return en
}

// code is the TOTP code of username's secret at the console's time.
func (e *env) code(username string) string {
	e.t.Helper()
	c, err := totp.GenerateCode(e.secrets[username].TOTPSecret, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// bounce suppresses addr for tenant as a hard bounce would.
func (e *env) bounce(tenantID, addr, msgID string) {
	e.t.Helper()
	_, err := e.sup.Add(context.Background(), suppression.Entry{
		Tenant: tenantID, Address: addr, List: suppression.All, Reason: suppression.Bounce,
		Channel: "dsn", MessageID: msgID,
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// mail records n events of type ty for tenant, as the queue does.
func (e *env) mail(tenantID string, ty events.Type, n int) {
	e.t.Helper()
	log := boltdb.Events(e.db)
	for i := range n {
		ev := &events.Event{ID: fmt.Sprintf("%s-%s-%d", tenantID, ty, i), Type: ty, Time: e.clock.Now().Add(-time.Hour),
			Data: events.Data{Tenant: tenantID, MessageID: fmt.Sprintf("m%d", i), Recipient: "r@example.net"}}
		if err := log.Record(context.Background(), ev); err != nil {
			e.t.Fatal(err)
		}
	}
}

// client is a plain HTTP client with its own cookies that does not follow
// redirects, for the tests that need no browser.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns the status, the body and its CSRF token.
func (e *env) get(c *http.Client, path string) (int, string, string) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfField.FindStringSubmatch(string(b)); m != nil {
		tok = m[1]
	}
	return resp.StatusCode, string(b), tok
}

// post sends a same-origin form (with the Origin a browser sends).
func (e *env) post(c *http.Client, path string, form url.Values) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.srv.URL)
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// password posts the sign-in form for username.
func (e *env) password(c *http.Client, username, password string) (int, string) {
	e.t.Helper()
	_, _, tok := e.get(c, "/console/sign-in")
	return e.post(c, "/console/sign-in", url.Values{"csrf": {tok}, "username": {username}, "password": {password}})
}
