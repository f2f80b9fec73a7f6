package console_test

import (
	"bufio"
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

var streamAttr = regexp.MustCompile(`data-stream="([^"]+)"`)

// record appends one event of tenantID to the log, as the queue does.
func (e *env) record(tenantID string, ty events.Type, id, rcpt, reply string) {
	e.t.Helper()
	ev := &events.Event{ID: id, Type: ty, Time: e.clock.Now(),
		Data: events.Data{Tenant: tenantID, MessageID: "m-" + id, Recipient: rcpt, List: "transactional", Reply: reply}}
	if err := boltdb.Events(e.db).Record(context.Background(), ev); err != nil {
		e.t.Fatal(err)
	}
}

// sse is an open event stream read a block at a time.
type sse struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// openStream GETs path with c, failing unless it is a stream.
func (e *env) openStream(c *http.Client, path string) *sse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("stream %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return &sse{t: e.t, resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next block named event (its data lines joined),
// skipping comments and the retry block; the request's deadline bounds
// the wait.
func (s *sse) next() (id, data string) {
	s.t.Helper()
	var name string
	var lines []string
	for {
		line := s.line()
		switch {
		case line == "":
			if name == "event" {
				return id, strings.Join(lines, "\n")
			}
			name, id, lines = "", "", nil
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			lines = append(lines, strings.TrimPrefix(line, "data: "))
		}
	}
}

// line reads a line as a browser does: CR, LF and CRLF each end one.
func (s *sse) line() string {
	s.t.Helper()
	var b strings.Builder
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			s.t.Fatalf("reading the stream: %v", err)
		}
		switch c {
		case '\r':
			if next, err := s.r.Peek(1); err == nil && next[0] == '\n' {
				s.r.ReadByte()
			}
			return b.String()
		case '\n':
			return b.String()
		}
		b.WriteByte(c)
	}
}

// TestEventStream: the Events page's live tail sends a tenant's new
// event, as the page's row, once it is committed; the filter of the
// page holds for it; another tenant's events are never sent, and another
// tenant's stream answers as a missing tenant's.
func TestEventStream(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.record("acme", events.MessageDelivered, "old", "old@example.net", "250 ok")
	c := e.signedIn("pat")

	st, body, _ := e.get(c, "/console/tenants/acme/events?type=message.bounced")
	m := streamAttr.FindStringSubmatch(body)
	if st != 200 || m == nil {
		t.Fatalf("the events page has no live tail: %d\n%s", st, body)
	}
	s := e.openStream(c, html.UnescapeString(m[1]))
	// Committed after the stream opened: only the notice can bring them.
	e.record("globex", events.MessageBounced, "g1", "secret.patient@example.net", "550 5.1.1 gone")
	e.record("acme", events.MessageDelivered, "a1", "filtered.out@example.net", "250 ok")
	e.record("acme", events.MessageBounced, "a2", "garcia@example.net", "550 5.1.1 <User unknown>")
	id, row := s.next()
	if !strings.Contains(row, "garcia@example.net") || !strings.Contains(row, "550 5.1.1 &lt;User unknown&gt;") ||
		!strings.HasPrefix(row, "<tr>") || id == "" {
		t.Errorf("the first event sent: id %q\n%s", id, row)
	}
	for _, not := range []string{"secret.patient", "filtered.out", "old@example.net"} {
		if strings.Contains(row, not) {
			t.Errorf("the stream sent %s:\n%s", not, row)
		}
	}

	stOther, other, _ := e.get(c, "/console/tenants/globex/events/stream")
	stNone, none, _ := e.get(c, "/console/tenants/nothing/events/stream")
	if stOther != 404 || stNone != 404 || other != none || strings.Contains(other, "secret.patient") {
		t.Errorf("another tenant's stream: %d, a missing tenant's: %d; want the same 404\n%s", stOther, stNone, other)
	}
}

// TestEventStreamCRLF: a remote reply with a stray CR cannot end the
// stream or add a field of its own; it stays text of its row.
func TestEventStreamCRLF(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	c := e.signedIn("pat")
	s := e.openStream(c, "/console/tenants/acme/events/stream")
	e.record("acme", events.MessageDeferred, "a1", "a@example.net", "451 busy\revent: end\rdata: <b>x</b>")
	e.record("acme", events.MessageDelivered, "a2", "b@example.net", "250 ok")
	_, first := s.next()
	if !strings.Contains(first, "a@example.net") || strings.Contains(first, "<b>") {
		t.Errorf("the first event:\n%s", first)
	}
	if _, second := s.next(); !strings.Contains(second, "b@example.net") {
		t.Errorf("the event after it:\n%s", second)
	}
}

// TestEventAndAuditFilters: the Events page keeps the type, recipient
// (any spelling) and times asked for, the Audit log page the actor,
// action and times, and each page's links keep the filter.
func TestEventAndAuditFilters(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.record("acme", events.MessageDelivered, "a1", "ana@example.net", "250 ok")
	e.record("acme", events.MessageBounced, "a2", "garcia@example.net", "550 5.1.1 gone")
	e.record("acme", events.MessageDelivered, "a3", "garcia@example.net", "250 ok later")
	e.audited("acme", "console:ana", 2)
	e.audited("acme", "api_key:k1", 1)
	c := e.signedIn("pat")

	_, body, _ := e.get(c, "/console/tenants/acme/events?recipient=Garcia@EXAMPLE.net&type=message.delivered")
	if !strings.Contains(body, "250 ok later") || strings.Contains(body, "550 5.1.1") || strings.Contains(body, "ana@example.net") {
		t.Errorf("events of garcia, delivered:\n%s", body)
	}
	from := e.clock.Now().Add(time.Minute).Format("2006-01-02T15:04")
	if _, body, _ := e.get(c, "/console/tenants/acme/events?from="+from); strings.Contains(body, "garcia@example.net") {
		t.Errorf("events from a minute on show older ones:\n%s", body)
	}
	if st, body, _ := e.get(c, "/console/tenants/acme/events?from=yesterday"); st != 400 || !strings.Contains(body, "must be a date") {
		t.Errorf("a bad from: %d\n%s", st, body)
	}
	if st, _, _ := e.get(c, "/console/tenants/acme/events?recipient=not-an-address"); st != 400 {
		t.Errorf("a bad recipient: %d", st)
	}

	_, body, _ = e.get(c, "/console/tenants/acme/audit?actor=api_key:k1")
	if !strings.Contains(body, "<td>api_key:k1</td>") || strings.Contains(body, "<td>console:ana</td>") {
		t.Errorf("the audit log of api_key:k1:\n%s", body)
	}
	to := e.clock.Now().Add(-2 * time.Hour).Format("2006-01-02T15:04")
	if _, body, _ := e.get(c, "/console/tenants/acme/audit?to="+to); strings.Contains(body, "<td>console:ana</td>") || !strings.Contains(body, "No changes that match") {
		t.Errorf("the audit log until two hours ago shows a record of an hour ago:\n%s", body)
	}
}

// TestBrowserLiveTail: a tenant's user on the Events page sees an event
// appear at the end of the table, without reloading, once it is
// committed; the page passes axe with the live status shown.
func TestBrowserLiveTail(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.record("acme", events.MessageDelivered, "a1", "ana@example.net", "250 ok")
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/events"),
		chromedp.WaitVisible(chromedp.CSS("p.live")))
	e.record("acme", events.MessageBounced, "a2", "garcia@example.net", "550 5.1.1 User unknown")
	b.run(chromedp.WaitVisible(chromedp.CSS("table.events tbody tr.new")))
	rows := b.text("table.events tbody")
	if !strings.Contains(rows, "garcia@example.net") || !strings.Contains(rows, "550 5.1.1 User unknown") ||
		strings.Index(rows, "ana@example.net") > strings.Index(rows, "garcia@example.net") {
		t.Errorf("the table after a new event:\n%s", rows)
	}
	b.accessible("events, live")
}

// TestEventStreamStop: an open live tail ends when the listener shuts
// down, so that the relay's Shutdown does not wait for the browser.
func TestEventStreamStop(t *testing.T) {
	stop := make(chan struct{})
	e := newEnv(t, func(o *console.Options) { o.Stop = stop })
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	c := e.signedIn("pat")
	s := e.openStream(c, "/console/tenants/acme/events/stream")
	close(stop)
	if _, err := io.ReadAll(s.r); err != nil {
		t.Errorf("the stream after Stop: %v, want its end", err)
	}
}

// TestEventStreamEndsAtSignOut: signing out (in another tab) ends the
// session's open live tail at once, with an "end" event, and a stream
// asked for after it is refused.
func TestEventStreamEndsAtSignOut(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	c := e.signedIn("pat")
	s := e.openStream(c, "/console/tenants/acme/events/stream")
	_, _, tok := e.get(c, "/console/tenants/acme/events")
	if st, _ := e.post(c, "/console/sign-out", url.Values{"csrf": {tok}}); st != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", st)
	}
	rest, err := io.ReadAll(s.r)
	if err != nil || !strings.Contains(string(rest), "event: end\ndata: session") {
		t.Errorf("the stream after sign-out: %v\n%s", err, rest)
	}
	resp, err := c.Get(e.srv.URL + "/console/tenants/acme/events/stream")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Errorf("a stream after sign-out: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
