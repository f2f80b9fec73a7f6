package admin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/webhooks"
	bolt "go.etcd.io/bbolt"
)

type endpointBody struct {
	ID      string
	URL     string
	Types   []string
	State   string
	Secret  string
	Secrets []struct {
		Prefix  string
		Expires time.Time
	}
}

// TestWebhookEndpoints: the contract's PUT /webhook, the collection, the
// secret shown once, rotation, state changes and tenant scoping.
func TestWebhookEndpoints(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")

	var ep endpointBody
	e.want(201, "PUT", "/api/v1/tenants/acme/webhook", `{"url":"https://hooks.acme.example/heed"}`, &ep)
	if ep.ID != "default" || !strings.HasPrefix(ep.Secret, "whsec_") || len(ep.Secrets) != 1 || !strings.HasPrefix(ep.Secret, ep.Secrets[0].Prefix) {
		t.Fatalf("created %+v", ep)
	}
	if _, err := webhooks.ParseSecret(ep.Secret); err != nil {
		t.Fatalf("secret: %v", err)
	}
	first := ep.Secret
	// The secret is shown once: not on a GET, not on a second PUT.
	var got endpointBody
	e.want(200, "GET", "/api/v1/tenants/acme/webhook", "", &got)
	if got.Secret != "" || got.URL != "https://hooks.acme.example/heed" || got.State != "active" {
		t.Fatalf("GET %+v", got)
	}
	e.want(200, "PUT", "/api/v1/tenants/acme/webhook", `{"url":"https://hooks.acme.example/v2","types":["recipient.unsubscribed"]}`, &got)
	if got.Secret != "" || got.URL != "https://hooks.acme.example/v2" || len(got.Types) != 1 {
		t.Fatalf("second PUT %+v", got)
	}
	// Nor is it stored in clear.
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if strings.Contains(string(v), first[len("whsec_"):]) {
					t.Errorf("the secret is in bucket %s in clear", name)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}

	// Rotation: a new secret, the old one expiring after the grace.
	var rot endpointBody
	e.want(200, "POST", "/api/v1/tenants/acme/webhooks/default/rotate", `{"grace":"2h"}`, &rot)
	if rot.Secret == "" || rot.Secret == first || len(rot.Secrets) != 2 || !rot.Secrets[0].Expires.IsZero() ||
		!strings.HasPrefix(rot.Secret, rot.Secrets[0].Prefix) || !strings.HasPrefix(first, rot.Secrets[1].Prefix) ||
		time.Until(rot.Secrets[1].Expires) < 119*time.Minute || time.Until(rot.Secrets[1].Expires) > 2*time.Hour {
		t.Fatalf("rotated %+v", rot)
	}
	e.wantProblem(400, "POST", "/api/v1/tenants/acme/webhooks/default/rotate", `{"grace":"forever"}`)

	// More endpoints through the collection.
	var ep2 endpointBody
	e.want(201, "POST", "/api/v1/tenants/acme/webhooks", `{"url":"https://crm.example/in"}`, &ep2)
	if !strings.HasPrefix(ep2.ID, "ep_") || ep2.Secret == "" {
		t.Fatalf("created %+v", ep2)
	}
	var list struct{ Endpoints []endpointBody }
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks", "", &list)
	if len(list.Endpoints) != 2 {
		t.Fatalf("list %+v", list)
	}
	for _, l := range list.Endpoints {
		if l.Secret != "" {
			t.Errorf("a listing shows a secret")
		}
	}
	// Disable and enable.
	e.want(200, "PATCH", "/api/v1/tenants/acme/webhooks/"+ep2.ID, `{"state":"disabled"}`, &got)
	if got.State != "disabled" {
		t.Fatalf("patched %+v", got)
	}
	e.want(200, "PATCH", "/api/v1/tenants/acme/webhooks/"+ep2.ID, `{"state":"active"}`, &got)
	if got.State != "active" {
		t.Fatalf("enabled again %+v", got)
	}
	e.wantProblem(400, "PATCH", "/api/v1/tenants/acme/webhooks/"+ep2.ID, `{"state":"paused"}`)

	// Bad input.
	for _, body := range []string{
		`{"url":"ftp://x.example/"}`,
		`{"url":"https://hooks.example/","types":["message.exploded"]}`,
		`{"url":"https://hooks.example/","id":"Bad Id"}`,
		`{"url":"https://hooks.example/","secret":"whsec_x"}`,
	} {
		e.wantProblem(400, "POST", "/api/v1/tenants/acme/webhooks", body)
	}
	e.wantProblem(409, "POST", "/api/v1/tenants/acme/webhooks", `{"id":"default","url":"https://hooks.example/"}`)

	// Another tenant sees none of it.
	e.want(200, "GET", "/api/v1/tenants/other/webhooks", "", &list)
	if len(list.Endpoints) != 0 {
		t.Fatalf("other tenant lists %+v", list)
	}
	e.wantProblem(404, "GET", "/api/v1/tenants/other/webhooks/"+ep2.ID, "")
	e.wantProblem(404, "GET", "/api/v1/tenants/other/webhook", "")
	e.wantProblem(404, "DELETE", "/api/v1/tenants/other/webhooks/"+ep2.ID, "")

	e.want(204, "DELETE", "/api/v1/tenants/acme/webhooks/"+ep2.ID, "", nil)
	e.wantProblem(404, "GET", "/api/v1/tenants/acme/webhooks/"+ep2.ID, "")
	// Deleting the tenant deletes its endpoints.
	e.want(204, "DELETE", "/api/v1/tenants/acme", "", nil)
	if eps, _ := e.hooks.Store.Endpoints(context.Background(), "acme"); len(eps) != 0 {
		t.Fatalf("endpoints of a deleted tenant: %+v", eps)
	}
}

// TestWebhookDeliveriesAPI: deliveries and their attempts, resend and
// replay, the operator's dead letters.
func TestWebhookDeliveriesAPI(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.want(201, "PUT", "/api/v1/tenants/acme/webhook", `{"url":"https://hooks.acme.example/"}`, nil)
	now := time.Now().UTC()
	evs := e.appendEvents(
		events.Event{Type: events.MessageDelivered, Time: now, Data: events.Data{Tenant: "acme", Recipient: "a@example.com"}},
		events.Event{Type: events.RecipientUnsubscribed, Time: now, Data: events.Data{Tenant: "acme", Recipient: "a@example.com"}},
	)
	// The first was attempted and failed for good; the second delivered.
	ctx := context.Background()
	for i, st := range []webhooks.Status{webhooks.Failed, webhooks.Delivered} {
		r := webhooks.Result{Tenant: "acme", Endpoint: "default", Event: evs[i], Status: st,
			Attempt: webhooks.Attempt{At: now, StatusCode: 500 - 300*i}}
		if err := e.hooks.Store.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var page struct {
		Deliveries []webhooks.Delivery
		Next       string
	}
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries", "", &page)
	if len(page.Deliveries) != 2 || page.Deliveries[0].EventID != evs[1].ID || page.Deliveries[1].Status != webhooks.Failed {
		t.Fatalf("deliveries %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries?limit=1", "", &page)
	if len(page.Deliveries) != 1 || page.Next == "" {
		t.Fatalf("first page %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries?limit=1&cursor="+page.Next, "", &page)
	if len(page.Deliveries) != 1 || page.Deliveries[0].EventID != evs[0].ID {
		t.Fatalf("second page %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries?status=failed", "", &page)
	if len(page.Deliveries) != 1 || page.Deliveries[0].Attempts[0].StatusCode != 500 {
		t.Fatalf("failed %+v", page)
	}
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries?status=lost", "")
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries?cursor=!!", "")

	// The operator's dead letters, all tenants or one.
	e.want(200, "GET", "/api/v1/webhook-dead-letters", "", &page)
	if len(page.Deliveries) != 1 || page.Deliveries[0].Tenant != "acme" {
		t.Fatalf("dead letters %+v", page)
	}
	e.want(200, "GET", "/api/v1/webhook-dead-letters?tenant=other", "", &page)
	if len(page.Deliveries) != 0 {
		t.Fatalf("dead letters of other %+v", page)
	}

	// One delivery by event id or seq.
	var d webhooks.Delivery
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries/"+evs[0].ID, "", &d)
	if d.Seq != evs[0].Seq || len(d.Attempts) != 1 {
		t.Fatalf("delivery %+v", d)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries/2", "", &d)
	if d.EventID != evs[1].ID {
		t.Fatalf("delivery by seq %+v", d)
	}
	e.wantProblem(404, "GET", "/api/v1/tenants/acme/webhooks/default/deliveries/evt_nope", "")

	// Resend the dead letter: pending, no longer dead.
	e.want(202, "POST", "/api/v1/tenants/acme/webhooks/default/deliveries/"+evs[0].ID+"/resend", "", &d)
	if d.Status != webhooks.Pending {
		t.Fatalf("resent %+v", d)
	}
	e.want(200, "GET", "/api/v1/webhook-dead-letters", "", &page)
	if len(page.Deliveries) != 0 {
		t.Fatalf("dead letters after resend %+v", page)
	}
	// Replay a range.
	var rep struct{ Scheduled int }
	e.want(202, "POST", "/api/v1/tenants/acme/webhooks/default/replay",
		`{"since":"`+now.Add(-time.Minute).Format(time.RFC3339)+`","until":"`+now.Add(time.Minute).Format(time.RFC3339)+`"}`, &rep)
	if rep.Scheduled != 2 {
		t.Fatalf("replay %+v", rep)
	}
	e.wantProblem(400, "POST", "/api/v1/tenants/acme/webhooks/default/replay", `{}`)
	e.wantProblem(404, "POST", "/api/v1/tenants/acme/webhooks/nope/replay", `{"since":"2026-01-01T00:00:00Z"}`)
}
