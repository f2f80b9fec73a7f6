package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/webhooks"
	bolt "go.etcd.io/bbolt"
)

const token = "operator-secret"

type fakeCaptures struct{ mail map[string]string }

func (f fakeCaptures) List() ([]outbound.Captured, error) {
	var out []outbound.Captured
	for id, body := range f.mail {
		out = append(out, outbound.Captured{ID: id, To: "bob@example.net", Size: int64(len(body))})
	}
	return out, nil
}

func (f fakeCaptures) Open(id string) (io.ReadCloser, error) {
	b, ok := f.mail[id]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(strings.NewReader(b)), nil
}

type env struct {
	t     *testing.T
	url   string
	db    *store.DB
	reg   *tenant.Registry
	queue *queue.Records
	hooks *webhooks.Manager
	ready error
	// dns is the fake DNS at the edge of the world: name → TXT values.
	dnsMu sync.Mutex
	dns   map[string][]string
}

func (e *env) publish(name string, values ...string) {
	e.dnsMu.Lock()
	defer e.dnsMu.Unlock()
	e.dns[name] = values
}

func (e *env) lookupTXT(_ context.Context, name string) ([]string, error) {
	e.dnsMu.Lock()
	defer e.dnsMu.Unlock()
	if v, ok := e.dns[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the options changed by opts first.
func newEnvWith(t *testing.T, opts func(*Options)) *env {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, reg: tenant.NewRegistry(boltdb.Tenants(db)), queue: boltdb.Queue(db), dns: map[string][]string{}}
	if err := e.reg.SetSealKey([]byte("admin test server key, 32 bytes.")); err != nil {
		t.Fatal(err)
	}
	sealer, err := webhooks.NewSealer([]byte("admin test server key, 32 bytes."))
	if err != nil {
		t.Fatal(err)
	}
	e.hooks = &webhooks.Manager{Store: boltdb.Webhooks(db), Events: boltdb.Events(db), Sealer: sealer, AllowPrivate: true}
	o := Options{
		Audit:          boltdb.Audit(db),
		Changes:        txn.Narrow(boltdb.New(db), func(t backend.Tx) Tx { return t }),
		Webhooks:       e.hooks,
		Suppressions:   boltdb.Suppressions(db, []byte("admin test hash key"), time.Now),
		LookupTXT:      e.lookupTXT,
		Tenants:        e.reg,
		Events:         boltdb.Events(db),
		Messages:       e.queue,
		Captures:       fakeCaptures{map[string]string{"c1": "Subject: hi\r\n\r\nhello\r\n"}},
		OperatorTokens: []string{"other-token", token},
		Ready:          func() error { return e.ready },
		Hostname:       "relay.example.com",
	}
	if opts != nil {
		opts(&o)
	}
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// call sends a request with the operator token and returns the response
// with its body read.
func (e *env) call(method, path, body string) (*http.Response, []byte) {
	return e.callAs(token, method, path, body)
}

func (e *env) callAs(tok, method, path, body string) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// want calls and checks status and, for JSON, decodes into v.
func (e *env) want(status int, method, path, body string, v any) {
	e.t.Helper()
	resp, b := e.call(method, path, body)
	if resp.StatusCode != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, status, b)
	}
	if v == nil {
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if err := json.Unmarshal(b, v); err != nil {
		e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
	}
}

// problem checks that resp is a problem+json document with status.
func problem(t *testing.T, resp *http.Response, body []byte, status int) Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type %q, want %q; body %s", ct, ProblemContentType, body)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	if p.Status != status || p.Type == "" || p.Title == "" {
		t.Fatalf("problem %+v, want status %d with type and title", p, status)
	}
	return p
}

func (e *env) wantProblem(status int, method, path, body string) Problem {
	e.t.Helper()
	resp, b := e.call(method, path, body)
	return problem(e.t, resp, b, status)
}

func (e *env) createTenant(id string) {
	e.t.Helper()
	e.want(201, "POST", "/api/v1/tenants", `{"id":"`+id+`","name":"`+id+` Ltd","postal_address":"1 Main St"}`, nil)
}

// appendEvents writes evs to the event log, in one transaction, as the
// relay does, and returns them with their ids and sequence numbers.
func (e *env) appendEvents(evs ...events.Event) []events.Event {
	e.t.Helper()
	out := make([]events.Event, len(evs))
	err := e.db.Update(func(tx *bolt.Tx) error {
		for i, ev := range evs { // from the inputs: the function may run again
			if err := events.Append(boltdb.TxFromBolt(tx).Events(), &ev); err != nil {
				return err
			}
			out[i] = ev
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	resp, b := e.callAs("", "GET", "/api/v1/tenants", "")
	problem(t, resp, b, 401)
	if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
		t.Errorf("WWW-Authenticate %q", h)
	}
	resp, b = e.callAs("wrong", "GET", "/api/v1/tenants", "")
	problem(t, resp, b, 401)
	resp, b = e.callAs("", "GET", "/api/v1/no-such-route", "")
	problem(t, resp, b, 401)
	resp, b = e.callAs("other-token", "GET", "/api/v1/tenants", "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"tenants":[]`) {
		t.Errorf("second token: %d %s", resp.StatusCode, b)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	resp, b := e.callAs("", "GET", "/healthz", "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", resp.StatusCode, b)
	}
	resp, _ = e.callAs("", "GET", "/readyz", "")
	if resp.StatusCode != 200 {
		t.Errorf("readyz: %d", resp.StatusCode)
	}
	e.ready = errors.New("database closed")
	resp, b = e.callAs("", "GET", "/readyz", "")
	if p := problem(t, resp, b, 503); !strings.Contains(p.Detail, "database closed") {
		t.Errorf("readyz detail %q", p.Detail)
	}
}

func TestTenants(t *testing.T) {
	e := newEnv(t)
	var got tenant.Tenant
	e.want(201, "POST", "/api/v1/tenants", `{"id":"acme","name":"Acme","postal_address":"1 Main St"}`, &got)
	if got.ID != "acme" || got.Name != "Acme" || got.PostalAddress != "1 Main St" || got.CreatedAt.IsZero() {
		t.Errorf("created %+v", got)
	}
	p := e.wantProblem(409, "POST", "/api/v1/tenants", `{"id":"acme","name":"Again"}`)
	if p.Type != TypeConflict || !strings.Contains(p.Detail, "acme") {
		t.Errorf("duplicate: %+v", p)
	}
	p = e.wantProblem(400, "POST", "/api/v1/tenants", `{"id":"Bad Id","name":"x"}`)
	if p.Type != TypeInvalidRequest || !strings.Contains(p.Detail, "id") {
		t.Errorf("bad id: %+v", p)
	}
	e.wantProblem(400, "POST", "/api/v1/tenants", `{"id":"noname"}`)

	e.want(200, "PATCH", "/api/v1/tenants/acme", `{"name":"Acme Inc"}`, &got)
	if got.Name != "Acme Inc" || got.PostalAddress != "1 Main St" {
		t.Errorf("patched %+v", got)
	}
	var list struct{ Tenants []tenant.Tenant }
	e.want(200, "GET", "/api/v1/tenants", "", &list)
	if len(list.Tenants) != 1 || list.Tenants[0].Name != "Acme Inc" {
		t.Errorf("list %+v", list)
	}
	e.want(204, "DELETE", "/api/v1/tenants/acme", "", nil)
	e.wantProblem(404, "GET", "/api/v1/tenants/acme", "")
	e.wantProblem(404, "GET", "/api/v1/tenants/acme/lists", "")
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{
		`{"id":"acme","name":"Acme","colour":"red"}`, // unknown field
		`{"id":"acme",`, // truncated
		`not json`,
		`{"id":"acme","name":"Acme"} {}`, // trailing data
		`{"id":5,"name":"Acme"}`,         // wrong type
	} {
		p := e.wantProblem(400, "POST", "/api/v1/tenants", body)
		if p.Type != TypeInvalidRequest || p.Detail == "" {
			t.Errorf("%s: %+v", body, p)
		}
	}
	p := e.wantProblem(400, "POST", "/api/v1/tenants", `{"id":"acme","name":"Acme","colour":"red"}`)
	if !strings.Contains(p.Detail, "colour") {
		t.Errorf("unknown field detail %q", p.Detail)
	}
	big := `{"id":"acme","name":"` + strings.Repeat("a", maxBody) + `"}`
	e.wantProblem(413, "POST", "/api/v1/tenants", big)

	p = e.wantProblem(404, "GET", "/api/v1/nothing-here", "")
	if p.Type != "about:blank" || p.Title != "Not Found" {
		t.Errorf("unknown route: %+v", p)
	}
	resp, b := e.callAs("", "GET", "/nothing", "")
	problem(t, resp, b, 404)
	resp, b = e.call("PUT", "/api/v1/tenants", "{}")
	problem(t, resp, b, 405)
	if resp.Header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
}

func TestCredentials(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	var pw map[string]any
	e.want(201, "POST", "/api/v1/tenants/acme/credentials", `{}`, &pw)
	password, _ := pw["password"].(string)
	username, _ := pw["username"].(string)
	if password == "" || username == "" || pw["id"] == nil {
		t.Fatalf("password credential %v", pw)
	}
	c, err := e.reg.Authenticate(context.Background(), username, password)
	if err != nil || c.Tenant != "acme" {
		t.Fatalf("Authenticate: %+v %v", c, err)
	}

	resp, b := e.call("GET", "/api/v1/tenants/acme/credentials", "")
	if resp.StatusCode != 200 || strings.Contains(string(b), password) ||
		strings.Contains(string(b), "hash") || strings.Contains(string(b), "password\":") {
		t.Fatalf("list shows secrets: %d %s", resp.StatusCode, b)
	}
	var list struct{ Credentials []map[string]any }
	if err := json.Unmarshal(b, &list); err != nil || len(list.Credentials) != 1 || list.Credentials[0]["username"] != username {
		t.Fatalf("list %s: %v", b, err)
	}

	var ip map[string]any
	e.want(201, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"203.0.113.0/24","default_list":"marketing"}`, &ip)
	if ip["kind"] != "ip" || ip["cidr"] != "203.0.113.0/24" || ip["default_list"] != "marketing" || ip["password"] != nil {
		t.Errorf("ip credential %v", ip)
	}
	p := e.wantProblem(409, "POST", "/api/v1/tenants/other/credentials", `{"kind":"ip","cidr":"203.0.113.128/25"}`)
	if p.Type != TypeConflict {
		t.Errorf("overlap: %+v", p)
	}
	p = e.wantProblem(400, "POST", "/api/v1/tenants/acme/credentials", `{"default_list":"nope"}`)
	if !strings.Contains(p.Detail, "default_list") {
		t.Errorf("default_list: %+v", p)
	}
	e.wantProblem(400, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"ip","cidr":"nonsense"}`)
	e.wantProblem(400, "POST", "/api/v1/tenants/acme/credentials", `{"kind":"magic"}`)
	e.wantProblem(404, "POST", "/api/v1/tenants/ghost/credentials", `{}`)

	e.want(204, "DELETE", "/api/v1/tenants/acme/credentials/"+username, "", nil)
	e.wantProblem(404, "DELETE", "/api/v1/tenants/acme/credentials/"+username, "")
	if _, err := e.reg.Authenticate(context.Background(), username, password); err == nil {
		t.Error("revoked credential still authenticates")
	}
}

type domainResp struct {
	Domain     string      `json:"domain"`
	Tenant     string      `json:"tenant"`
	CreatedAt  time.Time   `json:"created_at"`
	Keys       []keyView   `json:"keys"`
	DNSRecords []DNSRecord `json:"dns_records"`
	DNSCheck   *dnsCheck   `json:"dns_check"`
}

func TestDomains(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	var d domainResp
	e.want(201, "POST", "/api/v1/tenants/acme/domains", `{"domain":"Mail.Example.COM."}`, &d)
	if d.Domain != "mail.example.com" || d.Tenant != "acme" || d.CreatedAt.IsZero() {
		t.Errorf("domain %+v", d)
	}
	checkDomainRecords(t, d)
	e.wantProblem(409, "POST", "/api/v1/tenants/other/domains", `{"domain":"mail.example.com"}`)
	e.wantProblem(409, "POST", "/api/v1/tenants/acme/domains", `{"domain":"mail.example.com"}`)
	e.wantProblem(400, "POST", "/api/v1/tenants/acme/domains", `{"domain":"localhost"}`)

	mine := e.wantProblem(404, "GET", "/api/v1/tenants/other/domains/mail.example.com", "")
	if strings.Contains(mine.Detail, "acme") {
		t.Errorf("404 reveals the owner: %q", mine.Detail)
	}
	e.wantProblem(404, "DELETE", "/api/v1/tenants/other/domains/mail.example.com", "")

	e.want(200, "GET", "/api/v1/tenants/acme/domains/mail.example.com", "", &d)
	checkDomainRecords(t, d)
	var list struct{ Domains []domainResp }
	e.want(200, "GET", "/api/v1/tenants/acme/domains", "", &list)
	if len(list.Domains) != 1 {
		t.Errorf("list %+v", list)
	}
	e.want(200, "GET", "/api/v1/tenants/other/domains", "", &list)
	if len(list.Domains) != 0 {
		t.Errorf("other's list %+v", list)
	}
	e.want(204, "DELETE", "/api/v1/tenants/acme/domains/mail.example.com", "", nil)
	e.wantProblem(404, "GET", "/api/v1/tenants/acme/domains/mail.example.com", "")
}

func TestLists(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	var l tenant.List
	e.want(201, "PUT", "/api/v1/tenants/acme/lists/news", `{"name":"Newsletter","kind":"marketing"}`, &l)
	if l.ID != "news" || l.Kind != "marketing" || l.Tenant != "acme" {
		t.Errorf("created %+v", l)
	}
	created := l.CreatedAt
	e.want(200, "PUT", "/api/v1/tenants/acme/lists/news", `{"name":"News","kind":"transactional","unsubscribe":true}`, &l)
	if l.Name != "News" || l.Kind != "transactional" || !l.Unsubscribe || !l.CreatedAt.Equal(created) {
		t.Errorf("replaced %+v (created %v)", l, created)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/lists/news", "", &l)
	if l.Name != "News" || !l.Unsubscribe {
		t.Errorf("get %+v", l)
	}
	var list struct{ Lists []tenant.List }
	e.want(200, "GET", "/api/v1/tenants/acme/lists", "", &list)
	if len(list.Lists) != 3 { // the two defaults and news
		t.Errorf("lists %+v", list)
	}
	p := e.wantProblem(400, "PUT", "/api/v1/tenants/acme/lists/news", `{"name":"News","kind":"bulk"}`)
	if !strings.Contains(p.Detail, "kind") {
		t.Errorf("bad kind: %+v", p)
	}
	e.wantProblem(400, "PUT", "/api/v1/tenants/acme/lists/news", `{"kind":"marketing"}`)
	e.wantProblem(400, "PUT", "/api/v1/tenants/acme/lists/Bad%20Id", `{"name":"x","kind":"marketing"}`)
	e.wantProblem(404, "GET", "/api/v1/tenants/acme/lists/missing", "")
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	now := time.Now().UTC()
	e.appendEvents(
		events.Event{Type: events.MessageDelivered, Time: now, Data: events.Data{Tenant: "acme", MessageID: "m1"}},
		events.Event{Type: events.MessageBounced, Time: now, Data: events.Data{Tenant: "other", MessageID: "m2"}},
		events.Event{Type: events.MessageDeferred, Time: now, Data: events.Data{Tenant: "acme", MessageID: "m3"}},
	)
	var page struct {
		Events []events.Event
		Next   string
	}
	e.want(200, "GET", "/api/v1/tenants/acme/events", "", &page)
	if len(page.Events) != 2 || page.Events[0].Data.MessageID != "m1" || page.Events[1].Type != events.MessageDeferred || page.Next != "3" {
		t.Fatalf("page %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/events?after=1&limit=1", "", &page)
	if len(page.Events) != 1 || page.Events[0].Seq != 3 || page.Next != "3" {
		t.Fatalf("page after 1 %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/events?after=3", "", &page)
	if len(page.Events) != 0 || page.Next != "3" {
		t.Fatalf("empty page %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/events?type=message.deferred", "", &page)
	if len(page.Events) != 1 || page.Events[0].Data.MessageID != "m3" || page.Next != "3" {
		t.Fatalf("deferred only %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/events?type=message.bounced,message.delivered&limit=5", "", &page)
	if len(page.Events) != 1 || page.Events[0].Data.MessageID != "m1" {
		t.Fatalf("bounced or delivered %+v", page)
	}
	// A filtered page reads on past events it leaves out (its stop at the
	// limit-th match: TestEventsFilteredPageStopsAtLimit).
	e.want(200, "GET", "/api/v1/tenants/acme/events?type=message.deferred&limit=1", "", &page)
	if len(page.Events) != 1 || page.Events[0].Data.MessageID != "m3" || page.Next != "3" {
		t.Fatalf("deferred, one a page %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/events?type=message.delivered,message.deferred&limit=1", "", &page)
	if len(page.Events) != 1 || page.Events[0].Data.MessageID != "m1" || page.Next != "1" {
		t.Fatalf("delivered or deferred, one a page %+v", page)
	}
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/events?type=message.lost", "")
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/events?limit=0", "")
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/events?limit=1001", "")
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/events?after=-1", "")
	e.wantProblem(404, "GET", "/api/v1/tenants/ghost/events", "")

	// A tenant deleted and made again with the same id (another business,
	// maybe) sees none of the old events; other tenants keep theirs.
	e.want(204, "DELETE", "/api/v1/tenants/acme", "", nil)
	e.createTenant("acme")
	e.want(200, "GET", "/api/v1/tenants/acme/events", "", &page)
	if len(page.Events) != 0 {
		t.Fatalf("a new tenant of the old id sees %+v", page.Events)
	}
	if evs, _ := boltdb.Events(e.db).Events(context.Background(), "other", 0, 10); len(evs) != 1 {
		t.Fatalf("the other tenant's events: %+v", evs)
	}
}

func TestMessages(t *testing.T) {
	e := newEnv(t)
	p := e.wantProblem(404, "GET", "/api/v1/messages/nope", "")
	if !strings.Contains(p.Detail, "nope") {
		t.Errorf("detail %q", p.Detail)
	}
	msg := &queue.Message{
		ID: "m1", Tenant: "acme", List: "transactional", From: "a@example.com", ReceivedAt: time.Now().UTC(),
		Recipients: []queue.Recipient{{Index: 0, Address: "b@example.net"}, {Index: 1, Address: "c@example.org"}},
	}
	if err := e.queue.Add(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var got queue.Message
	e.want(200, "GET", "/api/v1/messages/m1", "", &got)
	if len(got.Recipients) != 2 || got.Recipients[1].Address != "c@example.org" || got.Recipients[0].State != queue.Queued {
		t.Errorf("message %+v", got)
	}

	// A deleted tenant's messages go with it: a tenant made again with
	// the same id does not see them, and none of them is sent.
	e.createTenant("acme")
	e.want(204, "DELETE", "/api/v1/tenants/acme", "", nil)
	e.createTenant("acme")
	e.wantProblem(404, "GET", "/api/v1/messages/m1", "")
	if n, err := e.queue.Depth(); err != nil || n != 0 {
		t.Errorf("after deleting the tenant, %d recipients wait for an attempt (%v)", n, err)
	}
}

func TestCaptured(t *testing.T) {
	e := newEnv(t)
	var list struct{ Captured []outbound.Captured }
	e.want(200, "GET", "/api/v1/captured", "", &list)
	if len(list.Captured) != 1 || list.Captured[0].ID != "c1" {
		t.Errorf("captured %+v", list)
	}
	resp, b := e.call("GET", "/api/v1/captured/c1", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "message/rfc822" || !strings.HasPrefix(string(b), "Subject: hi") {
		t.Errorf("captured body: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	e.wantProblem(404, "GET", "/api/v1/captured/c2", "")

	// Not in capture mode.
	srv := httptest.NewServer(New(Options{Tenants: e.reg, OperatorTokens: []string{token}}))
	defer srv.Close()
	e2 := &env{t: t, url: srv.URL}
	p := e2.wantProblem(404, "GET", "/api/v1/captured", "")
	if !strings.Contains(p.Detail, "capture mode") {
		t.Errorf("detail %q", p.Detail)
	}
}

// TestEventsFilteredPageStopsAtLimit: a filtered page ends at its limit-th
// match, even when the page it read holds more, so that next points right
// after the last event returned and nothing is skipped.
func TestEventsFilteredPageStopsAtLimit(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	now := time.Now().UTC()
	for _, ty := range []events.Type{events.MessageDelivered, events.MessageDeferred, events.MessageDeferred, events.MessageDeferred} {
		e.appendEvents(events.Event{Type: ty, Time: now, Data: events.Data{Tenant: "acme"}})
	}
	var page struct {
		Events []events.Event
		Next   string
	}
	// Read two at a time: [1 delivered, 2 deferred], [3 deferred, 4 deferred];
	// the second read holds two matches, of which the page has room for one.
	e.want(200, "GET", "/api/v1/tenants/acme/events?type=message.deferred&limit=2", "", &page)
	if len(page.Events) != 2 || page.Events[1].Seq != 3 || page.Next != "3" {
		t.Fatalf("deferred, two a page %+v", page)
	}
}
