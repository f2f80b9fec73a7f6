package smtpd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/unread"
	"github.com/heedmail/heed/suppression"
)

// keptRecords reads the records of reports/unread, oldest first, as a
// user of the folder (or of the admin API) would see them.
func (e *inboundEnv) keptRecords() []unread.Report {
	e.t.Helper()
	paths, err := filepath.Glob(filepath.Join(e.unread, "*.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []unread.Report
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			e.t.Fatal(err)
		}
		var r unread.Report
		if err := json.Unmarshal(b, &r); err != nil {
			e.t.Fatalf("%s: %v", p, err)
		}
		if _, err := os.Stat(strings.TrimSuffix(p, ".json") + ".eml"); err != nil {
			e.t.Errorf("record %s has no report beside it: %v", p, err)
		}
		out = append(out, r)
	}
	return out
}

// sentMessage stores a message of tenant acme to pat@example.net, as the
// queue would, and returns it with its VERP return path.
func (e *inboundEnv) sentMessage(verp queue.VERP) (*queue.Message, string) {
	e.t.Helper()
	m := &queue.Message{
		ID: ids.New(e.clock.Now()), Tenant: "acme", List: "news", From: "news@acme.test", ReceivedAt: e.clock.Now(),
		Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}},
	}
	if err := boltdb.Queue(e.db).Add(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
	return m, verp.Address(m.ID, 0)
}

// arf is an ARF report of feedbackType whose quoted original's return
// path is returnPath.
func arf(feedbackType, returnPath string) string {
	return "From: fbl@isp.example\r\nTo: fbl@bounces.relay.test\r\nSubject: report\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nA report.\r\n" +
		"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: " + feedbackType + "\r\nUser-Agent: isp/1.0\r\nVersion: 1\r\n" +
		"Original-Rcpt-To: pat@example.net\r\n\r\n" +
		"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <" + returnPath + ">\r\nFrom: news@acme.test\r\nTo: pat@example.net\r\nSubject: hi\r\n\r\n" +
		"--b--\r\n"
}

// undetermined is a DSN for pat@example.net whose failure gives no reason
// Heed can tell.
const undetermined = "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=d\r\n\r\n" +
	"--d\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n" +
	"--d\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
	"Final-Recipient: rfc822; pat@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp; 550 Unable to deliver\r\n\r\n--d--\r\n"

// TestUnreadReportsKeepWhy: each report Heed does not act on is kept with
// a record of why (unparsable with the parse error, unknown-message,
// feedback with its type, not-actionable) and how it came (client,
// envelope sender, return-path recipients, size); a feedback report about
// a tenant's message is also that tenant's report.feedback event, and
// suppresses nobody. A report Heed acts on is not kept.
func TestUnreadReportsKeepWhy(t *testing.T) {
	var verp queue.VERP
	e := startInbound(t, func(o *InboundOptions) { verp = o.VERP })
	log := boltdb.Events(e.db)
	m, rp := e.sentMessage(verp)
	c := e.dial("127.0.0.1")
	for _, tc := range []struct{ from, to, msg string }{
		{"", "fbl@bounces.relay.test", unreadable(1, 500)},
		{"fbl@isp.example", "abuse@bounces.relay.test", strangerARF},
		{"", "fbl@bounces.relay.test", arf("auth-failure", rp)},
		{"", rp, undetermined},
		{"", rp, arf("abuse", rp)}, // a complaint: acted on, not kept
	} {
		if err := send(c, tc.from, []string{tc.to}, tc.msg); err != nil {
			t.Fatalf("to %s: %v", tc.to, err)
		}
	}
	got := e.keptRecords()
	if len(got) != 4 {
		t.Fatalf("%d reports kept, want 4 (the complaint is acted on): %+v", len(got), got)
	}
	want := []struct {
		reason           unread.Reason
		detail, kind     string
		feedback, tenant string
		from, rcpt       string
	}{
		{unread.Unparsable, "unparsable", "", "", "", "", "fbl@bounces.relay.test"},
		{unread.UnknownMessage, "names no message", "complaint", "", "", "fbl@isp.example", "abuse@bounces.relay.test"},
		{unread.Feedback, "auth-failure", "feedback", "auth-failure", "acme", "", "fbl@bounces.relay.test"},
		{unread.NotActionable, "no reason", "bounce", "", "acme", "", rp},
	}
	for i, w := range want {
		r := got[i]
		if r.Reason != w.reason || !strings.Contains(r.Detail, w.detail) || r.Kind != w.kind || r.FeedbackType != w.feedback ||
			r.Tenant != w.tenant || r.MailFrom != w.from || len(r.Recipients) != 1 || r.Recipients[0] != w.rcpt {
			t.Errorf("report %d kept as %+v, want reason %s (%q), kind %q, feedback type %q, tenant %q, from %q, to %s",
				i+1, r, w.reason, w.detail, w.kind, w.feedback, w.tenant, w.from, w.rcpt)
		}
		if r.Client != "127.0.0.1" || r.Size == 0 || r.Truncated || !r.ReceivedAt.Equal(e.clock.Now()) || !unread.ValidID(r.ID) {
			t.Errorf("report %d: client %q, size %d, truncated %v, received %v, id %q", i+1, r.Client, r.Size, r.Truncated, r.ReceivedAt, r.ID)
		}
		if w.tenant != "" && r.MessageID != m.ID {
			t.Errorf("report %d names message %q, want %s", i+1, r.MessageID, m.ID)
		}
	}
	evs, err := log.Events(context.Background(), "acme", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	feedback := 0
	for _, ev := range evs {
		if ev.Type == events.ReportFeedback {
			feedback++
			if ev.Data.Reason != "auth-failure" || ev.Data.MessageID != m.ID || ev.Data.Recipient != "pat@example.net" || ev.Data.Channel != "arf" {
				t.Errorf("report.feedback event %+v", ev.Data)
			}
		}
	}
	if feedback != 1 {
		t.Errorf("%d report.feedback events for acme, want 1", feedback)
	}
	// Only the complaint suppresses.
	sup := e.in.o.Suppressions.(*suppression.Service)
	entries, _, err := sup.List(context.Background(), "acme", "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Reason != suppression.Complaint {
		t.Errorf("suppressions %+v, want the complaint only", entries)
	}
}
