package admin

import (
	"testing"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/suppression"
)

type suppressionPage struct {
	Suppressions []suppression.Entry `json:"suppressions"`
	Cursor       string              `json:"cursor"`
}

// TestSuppressionsAPI: an operator adds, lists and removes suppressions;
// addresses are normalised, scopes checked, tenants kept apart, and every
// change is an event.
func TestSuppressionsAPI(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("other")
	base := "/api/v1/tenants/acme/suppressions/"

	var got suppression.Entry
	e.want(201, "PUT", base+"Pat@Example.NET", `{"list":"marketing","reason":"unsubscribe"}`, &got)
	if got.Address != "pat@example.net" || got.List != "marketing" || got.Reason != suppression.Unsubscribe || got.Channel != "api" {
		t.Errorf("entry %+v", got)
	}
	e.want(200, "PUT", base+"pat@example.net", `{"list":"marketing","reason":"unsubscribe"}`, &got)
	// A bounce is for every list whatever the request says.
	e.want(201, "PUT", base+"gone@example.net", `{"list":"marketing","reason":"bounce"}`, &got)
	if got.List != suppression.All {
		t.Errorf("bounce scope %q, want *", got.List)
	}
	e.want(201, "PUT", base+"manual@example.net", "", &got)
	if got.List != suppression.All || got.Reason != suppression.Manual {
		t.Errorf("defaults %+v, want * and manual", got)
	}
	e.wantProblem(400, "PUT", base+"pat@example.net", `{"list":"nope"}`)
	e.wantProblem(400, "PUT", base+"pat@example.net", `{"reason":"because"}`)
	e.wantProblem(400, "PUT", base+"not-an-address", `{}`)

	var page suppressionPage
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions?limit=2", "", &page)
	if len(page.Suppressions) != 2 || page.Cursor == "" {
		t.Fatalf("first page %+v", page)
	}
	var rest suppressionPage
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions?limit=2&cursor="+page.Cursor, "", &rest)
	if len(rest.Suppressions) != 1 || rest.Cursor != "" {
		t.Errorf("second page %+v", rest)
	}
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions?list=marketing", "", &page)
	if len(page.Suppressions) != 1 || page.Suppressions[0].Address != "pat@example.net" {
		t.Errorf("marketing scope %+v", page)
	}
	e.want(200, "GET", "/api/v1/tenants/other/suppressions", "", &page)
	if len(page.Suppressions) != 0 {
		t.Errorf("other tenant sees %+v", page)
	}
	e.wantProblem(404, "DELETE", "/api/v1/tenants/other/suppressions/pat@example.net", "")

	// An opt-out goes only when named.
	e.wantProblem(409, "DELETE", base+"pat@example.net?list=marketing", "")
	e.want(204, "DELETE", base+"pat@example.net?list=marketing&reason=unsubscribe", "", nil)
	e.wantProblem(404, "DELETE", base+"pat@example.net?list=marketing", "")
	e.want(204, "DELETE", base+"gone@example.net", "", nil)

	evs, err := boltdb.Events(e.db).Events(t.Context(), "acme", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var added, removed int
	for _, ev := range evs {
		switch ev.Type {
		case events.SuppressionAdded:
			added++
		case events.SuppressionRemoved:
			removed++
		}
	}
	if added != 3 || removed != 2 {
		t.Errorf("%d suppression.added and %d suppression.removed events, want 3 and 2", added, removed)
	}
}

// TestSuppressionPathEdges: an escaped address is decoded once, a bad
// scope on DELETE is a 400, and a bounce answers with its own entry.
func TestSuppressionPathEdges(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/v1/tenants/acme/suppressions/"
	var got suppression.Entry
	e.want(201, "PUT", base+"a%2541@example.net", `{}`, &got)
	if got.Address != "a%41@example.net" {
		t.Errorf("address %q, want a%%41@example.net (decoded once)", got.Address)
	}
	e.want(201, "PUT", base+"pat%40example.net", `{"list":"marketing","reason":"unsubscribe"}`, &got)
	if got.Address != "pat@example.net" {
		t.Errorf("address %q", got.Address)
	}
	e.want(201, "PUT", base+"pat@example.net", `{"reason":"bounce"}`, &got)
	if got.Reason != suppression.Bounce || got.List != suppression.All {
		t.Errorf("bounce answered with %+v", got)
	}
	e.wantProblem(400, "DELETE", base+"pat@example.net?list=Not%20A%20List", "")
}

// TestClearingBounceKeepsOptOut: the operator clears a bounce (the
// mailbox works again); the recipient's opt-out and complaint stay until
// named.
func TestClearingBounceKeepsOptOut(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	base := "/api/v1/tenants/acme/suppressions/pat@example.net"
	e.want(201, "PUT", base, `{"list":"*","reason":"unsubscribe"}`, nil)
	e.want(201, "PUT", base, `{"reason":"bounce"}`, nil)
	e.want(201, "PUT", base, `{"reason":"complaint"}`, nil)
	e.want(204, "DELETE", base, "", nil)
	var page suppressionPage
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions", "", &page)
	if len(page.Suppressions) != 2 {
		t.Errorf("left %+v, want the opt-out and the complaint", page.Suppressions)
	}
	for _, got := range page.Suppressions {
		if got.Reason == suppression.Bounce {
			t.Errorf("the bounce is still there: %+v", got)
		}
	}
	e.wantProblem(409, "DELETE", base, "")
	e.want(204, "DELETE", base+"?reason=complaint", "", nil)
	e.wantProblem(400, "DELETE", base+"?reason=because", "")
}
