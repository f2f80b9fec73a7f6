package admin

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openBackends are the storage backends the admin API runs on, each over
// a fresh database.
var openBackends = []struct {
	name string
	open func(t *testing.T) backend.Backend
}{
	{"bbolt", func(t *testing.T) backend.Backend {
		db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return boltdb.New(db)
	}},
	{"postgres", func(t *testing.T) backend.Backend {
		db := backendtest.OpenPostgres(t, 0)
		return db.Backend()
	}},
}

// newFaultyEnv is the admin API with every store over a faulty b.
func newFaultyEnv(t *testing.T, b backend.Backend) (*env, *atomic.Int32) {
	t.Helper()
	fail := new(atomic.Int32)
	f := backendtest.Faulty{Backend: b, Fail: fail}
	reg := tenant.NewRegistry(tenant.NewDBStore(txn.Narrow(f, func(t backend.Tx) tenant.Rows { return t.Tenants() }), tenant.NewCache()))
	if err := reg.SetSealKey([]byte("admin test server key, 32 bytes.")); err != nil {
		t.Fatal(err)
	}
	sealer, err := webhooks.NewSealer([]byte("admin test server key, 32 bytes."))
	if err != nil {
		t.Fatal(err)
	}
	evs := events.NewLog(txn.Narrow(f.EventRunner(), func(t backend.Tx) events.TxLog { return t.Events() }), b.Watch)
	e := &env{t: t, reg: reg, dns: map[string][]string{}}
	e.hooks = &webhooks.Manager{Store: webhooks.New(txn.Narrow(f, func(t backend.Tx) webhooks.Tx { return t })), Events: evs, Sealer: sealer, AllowPrivate: true}
	srv := httptest.NewServer(New(Options{
		Audit:          audit.New(txn.Narrow(f, func(t backend.Tx) audit.Rows { return t.Audit() })),
		Changes:        txn.Narrow(f, func(t backend.Tx) Tx { return t }),
		Webhooks:       e.hooks,
		Suppressions:   suppression.New(txn.Narrow(f, func(t backend.Tx) suppression.Tx { return t }), []byte("admin test hash key"), time.Now),
		Tenants:        reg,
		Events:         evs,
		OperatorTokens: []string{token},
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e, fail
}

// TestChangeAndAuditRecordAtomic: an admin change and its audit record
// are one transaction, on every backend. When the record cannot be
// written the change is not made (and the client gets an error, not its
// 2xx); when the change fails half-way no record of it is left.
func TestChangeAndAuditRecordAtomic(t *testing.T) {
	for _, b := range openBackends {
		t.Run(b.name, func(t *testing.T) {
			e, fail := newFaultyEnv(t, b.open(t))
			e.createTenant("acme")
			e.createTenant("gone")
			records := func() int {
				var a struct{ Records []AuditRecord }
				e.want(http.StatusOK, "GET", "/api/v1/audit?limit=1000", "", &a)
				return len(a.Records)
			}
			routes := []struct {
				name         string
				method, path string
				body         string
				status       int
				changed      func() bool // whether the change is there
			}{
				{"suppression PUT", "PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", `{"reason":"manual"}`, http.StatusCreated,
					func() bool {
						resp, _ := e.call("GET", "/api/v1/tenants/acme/suppressions/pat@example.net", "")
						return resp.StatusCode == http.StatusOK
					}},
				{"credential create", "POST", "/api/v1/tenants/acme/credentials", `{"kind":"password"}`, http.StatusCreated,
					func() bool {
						var l struct{ Credentials []credentialView }
						e.want(http.StatusOK, "GET", "/api/v1/tenants/acme/credentials", "", &l)
						return len(l.Credentials) > 0
					}},
				{"tenant delete", "DELETE", "/api/v1/tenants/gone", "", http.StatusNoContent,
					func() bool {
						resp, _ := e.call("GET", "/api/v1/tenants/gone", "")
						return resp.StatusCode == http.StatusNotFound
					}},
				{"webhook PUT", "PUT", "/api/v1/tenants/acme/webhook", `{"url":"https://hooks.example.com/heed"}`, http.StatusCreated,
					func() bool {
						resp, _ := e.call("GET", "/api/v1/tenants/acme/webhook", "")
						return resp.StatusCode == http.StatusOK
					}},
			}
			for _, r := range routes {
				before := records()

				fail.Store(backendtest.FailAudit)
				resp, body := e.call(r.method, r.path, r.body)
				fail.Store(backendtest.FailNothing)
				if resp.StatusCode < 500 {
					t.Errorf("%s with its audit record failing: %d %s; want a 5xx", r.name, resp.StatusCode, body)
				}
				if r.changed() {
					t.Errorf("%s: the change is there without its audit record", r.name)
				}

				fail.Store(backendtest.FailChange)
				resp, body = e.call(r.method, r.path, r.body)
				fail.Store(backendtest.FailNothing)
				if resp.StatusCode < 500 {
					t.Errorf("%s with its change failing: %d %s; want a 5xx", r.name, resp.StatusCode, body)
				}
				if r.changed() {
					t.Errorf("%s: a change that failed is there", r.name)
				}
				if n := records(); n != before {
					t.Errorf("%s: %d audit records of changes that failed", r.name, n-before)
				}

				// And without a failure, the change and its one record.
				resp, body = e.call(r.method, r.path, r.body)
				if resp.StatusCode != r.status || !r.changed() {
					t.Errorf("%s: %d %s, changed %v; want %d and the change", r.name, resp.StatusCode, body, r.changed(), r.status)
				}
				var a struct{ Records []AuditRecord }
				e.want(http.StatusOK, "GET", "/api/v1/audit?limit=1000", "", &a)
				if len(a.Records) != before+1 || a.Records[before].Status != r.status {
					t.Errorf("%s: audit records %+v after %d; want one with %d", r.name, a.Records, before, r.status)
				}
			}
		})
	}
}
