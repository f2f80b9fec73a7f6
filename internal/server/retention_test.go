package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/testsink"
)

// TestRetention: a pass keeps what is younger than the cutoff and deletes
// the events, finished messages and finished webhook deliveries older than
// it; suppressions stay.
func TestRetention(t *testing.T) { eachBackend(t, testRetention) }

func testRetention(t *testing.T, backend string) {
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer recv.Close()
	e := startRelayOn(t, backend, testsink.Options{}, func(c *config.Config) { c.Webhooks.AllowPrivateTargets = true })
	user, pass, _ := e.tenantSetup()
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": recv.URL}, http.StatusCreated, nil)
	id := queuedID(t, e.send(user, pass, []string{"pat@example.net"}, reminderMsg))
	e.sink.Wait(t, 1, 20*time.Second)
	e.api("PUT", "/api/v1/tenants/acme/suppressions/sam@example.net", map[string]string{}, http.StatusCreated, nil)
	var evs struct{ Events []any }
	var hooks struct{ Deliveries []any }
	deliveries := func() int {
		e.api("GET", "/api/v1/tenants/acme/webhooks/default/deliveries?status=delivered", nil, http.StatusOK, &hooks)
		return len(hooks.Deliveries)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.api("GET", "/api/v1/tenants/acme/events", nil, http.StatusOK, &evs)
		var m struct{ Recipients []struct{ State string } }
		e.api("GET", "/api/v1/messages/"+id, nil, http.StatusOK, &m)
		if len(evs.Events) == 3 && m.Recipients[0].State == "delivered" && deliveries() == 3 {
			break // accepted, delivered, suppression.added, each sent to the endpoint
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %d, webhook deliveries %d", len(evs.Events), len(hooks.Deliveries))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	// A cutoff an hour ago: nothing is old enough.
	e.r.purge(context.Background(), time.Now().Add(-time.Hour))
	e.api("GET", "/api/v1/tenants/acme/events", nil, http.StatusOK, &evs)
	e.api("GET", "/api/v1/messages/"+id, nil, http.StatusOK, nil)
	if len(evs.Events) != 3 {
		t.Fatalf("a pass with an old cutoff deleted events: %d left", len(evs.Events))
	}
	if n := deliveries(); n != 3 {
		t.Fatalf("a pass with an old cutoff deleted webhook deliveries: %d left", n)
	}
	// As if 30 days went by.
	e.r.purge(context.Background(), time.Now().Add(time.Hour))
	e.api("GET", "/api/v1/tenants/acme/events", nil, http.StatusOK, &evs)
	if len(evs.Events) != 0 {
		t.Errorf("%d events left after their retention", len(evs.Events))
	}
	e.api("GET", "/api/v1/messages/"+id, nil, http.StatusNotFound, nil)
	if n := deliveries(); n != 0 {
		t.Errorf("%d webhook deliveries left after their retention", n)
	}
	var sup struct{ Suppressions []any }
	e.api("GET", "/api/v1/tenants/acme/suppressions", nil, http.StatusOK, &sup)
	if len(sup.Suppressions) != 1 {
		t.Errorf("suppressions after retention: %d, want 1", len(sup.Suppressions))
	}
}

// TestInboundBoundsFromConfig: the smtp.inbound keys reach the inbound
// listener (max_files, max_bytes, keep_bytes, the rate limit), and the
// retention job purges reports/unread by
// smtp.inbound.unread_reports_retention, counted from when each report
// was received (its record), not from its name.
func TestInboundBoundsFromConfig(t *testing.T) {
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		c.SMTP.Inbound.UnreadReportsMaxFiles = 2
		c.SMTP.Inbound.MaxMessagesPerClientPerMinute = 3
		c.SMTP.Inbound.UnreadReportsRetention = 48 * time.Hour
		c.SMTP.Inbound.UnreadReportKeepBytes = 4096
		c.SMTP.Inbound.UnreadReportsMaxBytes = 6000
	})
	dir := filepath.Join(e.cfg.DataDir, "reports", "unread")
	c := e.inboundFrom("127.0.0.1")
	for i := range 3 {
		if err := c.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader("Subject: ???\r\n\r\ngibberish\r\n")); err != nil {
			t.Fatalf("report %d: %v", i+1, err)
		}
	}
	if kept, _ := filepath.Glob(filepath.Join(dir, "*.eml")); len(kept) != 2 {
		t.Errorf("%d unread reports kept, want smtp.inbound.unread_reports_max_files = 2", len(kept))
	}
	var se *smtp.SMTPError
	err := c.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader("Subject: ???\r\n\r\ngibberish\r\n"))
	if !errors.As(err, &se) || se.Code != 450 {
		t.Errorf("a 4th message a minute = %v, want 450 (max_messages_per_client_per_minute = 3)", err)
	}
	// Two big reports from another client: each is cut to keep_bytes,
	// and two such do not fit in max_bytes although max_files would let
	// them.
	big := "Subject: big\r\n\r\n" + strings.Repeat("a line of a report nobody can read, again and again\r\n", 200)
	other := e.inboundFrom("127.0.0.2")
	for i := range 2 {
		if err := other.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader(big)); err != nil {
			t.Fatalf("big report %d: %v", i+1, err)
		}
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(kept) != 1 {
		t.Errorf("%d reports of 4 KiB kept, want 1 (smtp.inbound.unread_reports_max_bytes = 6000)", len(kept))
	}
	for _, p := range kept {
		b, _ := os.ReadFile(p)
		if len(b) > 4096 || !strings.HasPrefix(string(b), "X-Heed-Truncated: the report had") {
			t.Errorf("a big report kept as %d bytes starting %q, want at most unread_report_keep_bytes = 4096, marked", len(b), b[:min(len(b), 40)])
		}
	}
	// Reports received 3 days and 1 day ago, and one received 3 days ago
	// whose id is dated 3 days ahead (a clock stepped forward then back):
	// the two received 3 days ago are past 48h.
	now := time.Now()
	write := func(idAt, received time.Time) string {
		id := ids.New(idAt)
		rec := fmt.Sprintf(`{"id":%q,"received_at":%q,"reason":"unparsable","mail_from":"","size":12,"truncated":false}`, id, received.UTC().Format(time.RFC3339Nano))
		for name, data := range map[string]string{id + ".eml": "Subject: ???\r\n\r\nx\r\n", id + ".json": rec} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	old, young := write(now.Add(-72*time.Hour), now.Add(-72*time.Hour)), write(now.Add(-24*time.Hour), now.Add(-24*time.Hour))
	stepped := write(now.Add(72*time.Hour), now.Add(-72*time.Hour))
	e.r.purgeUnread()
	for _, id := range []string{old, stepped} {
		if _, err := os.Stat(filepath.Join(dir, id+".eml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a report received 3 days ago is still there after a retention pass (%v)", err)
		}
		if _, err := os.Stat(filepath.Join(dir, id+".json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the record of a purged report is still there (%v)", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, young+".eml")); err != nil {
		t.Errorf("a report kept 1 day was purged: %v", err)
	}
}

// inboundFrom opens an SMTP session to the inbound listener from local, an
// address of the loopback interface (the rate limit counts per client).
func (e *relayEnv) inboundFrom(local string) *smtp.Client {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", e.r.InboundAddr())
	if err != nil {
		e.t.Fatal(err)
	}
	c := smtp.NewClient(nc)
	e.t.Cleanup(func() { c.Close() })
	if err := c.Hello("mx.example.net"); err != nil {
		e.t.Fatal(err)
	}
	return c
}
