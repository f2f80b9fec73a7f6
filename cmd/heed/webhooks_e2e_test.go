package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/heedproc"
	"github.com/heedmail/heed/webhooks"
)

// hookReceiver is the sending app's webhook endpoint.
type hookReceiver struct {
	up atomic.Bool

	mu     sync.Mutex
	bodies map[string]string // webhook-id → body
	ok     map[string]bool   // ids answered 2xx
	bad    []string          // problems: a changed body, a bad signature
	tries  int
	secret string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("webhook-id")
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tries++
	if prev, ok := h.bodies[id]; ok && prev != string(body) {
		h.bad = append(h.bad, "webhook-id "+id+" came with two different bodies")
	}
	h.bodies[id] = string(body)
	if h.secret != "" {
		if err := webhooks.Verify(h.secret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			h.bad = append(h.bad, "webhook-id "+id+": "+err.Error())
		}
	}
	if !h.up.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	h.ok[id] = true
	w.WriteHeader(http.StatusOK)
}

// TestWebhooksSurviveSIGKILL: the app's endpoint is down while mail flows;
// heed is killed with events pending; after the restart, with the
// endpoint up, every event of the tenant arrives, each under the one id it
// had before the kill, signed with the endpoint's secret.
func TestWebhooksSurviveSIGKILL(t *testing.T) {
	recv := &hookReceiver{bodies: map[string]string{}, ok: map[string]bool{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	dir := t.TempDir()
	smtpAddr, adminAddr := freePort(t), freePort(t)
	const token = "webhook-test-operator-token-0123456789"
	cfgPath := writeConfig(t, dir, smtpAddr, adminAddr, token, "delivery: { mode: capture }\nwebhooks: { allow_private_targets: true }\n")

	p := startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p, adminAddr)
	api(t, adminAddr, token, "POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme"})
	api(t, adminAddr, token, "POST", "/api/v1/tenants/acme/domains", map[string]string{"domain": "acme.test"})
	cred := api(t, adminAddr, token, "POST", "/api/v1/tenants/acme/credentials", map[string]string{})
	hook := api(t, adminAddr, token, "PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": srv.URL + "/heed"})
	recv.mu.Lock()
	recv.secret = hook["secret"].(string)
	recv.mu.Unlock()

	c, err := smtp.Dial(smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", cred["username"].(string), cred["password"].(string))); err != nil {
		t.Fatal(err)
	}
	const messages = 30
	for i := range messages {
		msg := fmt.Sprintf("From: hello@acme.test\r\nSubject: %d\r\n\r\nhello\r\n", i)
		if err := c.SendMail("hello@acme.test", []string{fmt.Sprintf("r%d@example.net", i)}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	// Each message is accepted and delivered (capture): two events.
	tenantEvents := func() []string {
		var ids []string
		for _, ev := range api(t, adminAddr, token, "GET", "/api/v1/tenants/acme/events?limit=1000", nil)["events"].([]any) {
			ids = append(ids, ev.(map[string]any)["id"].(string))
		}
		return ids
	}
	heedproc.WaitFor(t, "every message captured", 30*time.Second, func() bool { return len(tenantEvents()) == 2*messages })
	heedproc.WaitFor(t, "failed attempts at the endpoint", 30*time.Second, func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.tries >= 10
	})
	p.Cmd.Process.Kill()
	<-p.Exited
	recv.mu.Lock()
	before := map[string]string{}
	for id, b := range recv.bodies {
		before[id] = b
	}
	recv.mu.Unlock()

	recv.up.Store(true)
	p2 := startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p2, adminAddr)
	all := tenantEvents()
	heedproc.WaitFor(t, "every event at the endpoint", 60*time.Second, func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		for _, id := range all {
			if !recv.ok[id] {
				return false
			}
		}
		return true
	})
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, b := range recv.bad {
		t.Error(b)
	}
	for id := range recv.ok {
		if !slices.Contains(all, id) {
			t.Errorf("the endpoint got id %s, which is no event of the tenant", id)
		}
	}
	for id, b := range before {
		if recv.bodies[id] != b {
			t.Errorf("event %s changed across the restart", id)
		}
	}
	t.Logf("%d events; %d attempted before the kill, all delivered after the restart in %d requests in all", len(all), len(before), recv.tries)
}
