package console_test

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/consoleusers"
)

// TestConsoleChangeAndAuditRecordAtomic: a console change and its audit
// record are one transaction, as the API's. When the record cannot be
// written the change is not made and the user sees an error, not the
// confirmation; when the change fails no record of it is left; without a
// failure, the change and exactly one record.
func TestConsoleChangeAndAuditRecordAtomic(t *testing.T) {
	fail := new(atomic.Int32)
	e := newEnvOver(t, func(b backend.Backend) backend.Backend { return backendtest.Faulty{Backend: b, Fail: fail} }, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.bounce("acme", "lee@example.net", "msg-0001")
	c := e.signedIn("ops")
	_, _, tok := e.get(c, "/console/tenants/acme/suppressions")
	ctx := context.Background()
	entries := func(addr string) int {
		es, err := e.sup.Lookup(ctx, "acme", addr)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	records := func() int {
		recs, err := e.audit.Records(ctx, "", 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	changes := []struct {
		name    string
		path    string
		form    url.Values
		changed func() bool
	}{
		{"add", "/console/tenants/acme/suppressions",
			url.Values{"csrf": {tok}, "address": {"pat@example.net"}, "list": {"*"}, "reason": {"manual"}},
			func() bool { return entries("pat@example.net") == 1 }},
		{"remove", "/console/tenants/acme/suppressions/remove",
			url.Values{"csrf": {tok}, "address": {"lee@example.net"}, "list": {"*"}, "reason": {"bounce"}},
			func() bool { return entries("lee@example.net") == 0 }},
	}
	for _, ch := range changes {
		before := records()
		for _, f := range []int32{backendtest.FailAudit, backendtest.FailChange} {
			fail.Store(f)
			st, body := e.post(c, ch.path, ch.form)
			fail.Store(backendtest.FailNothing)
			if st != http.StatusInternalServerError {
				t.Errorf("%s with write %d failing: %d, want 500\n%s", ch.name, f, st, body)
			}
			if ch.changed() {
				t.Errorf("%s with write %d failing: the change is there", ch.name, f)
			}
			if n := records(); n != before {
				t.Errorf("%s with write %d failing: %d audit records of a change not made", ch.name, f, n-before)
			}
		}
		if st, body := e.post(c, ch.path, ch.form); st != http.StatusSeeOther || !ch.changed() {
			t.Errorf("%s: %d, changed %v; want 303 and the change\n%s", ch.name, st, ch.changed(), body)
		}
		if n := records(); n != before+1 {
			t.Errorf("%s: %d audit records, want one", ch.name, n-before)
		}
	}
}
