package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/testsink"
)

// arfOf is an ARF report of feedbackType about the copy sent with
// return path returnPath to pat@example.net.
func arfOf(feedbackType, returnPath string) string {
	return "From: fbl@mailbox.example\r\nTo: fbl@bounces.relay.test\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n" +
		"--f\r\nContent-Type: text/plain\r\n\r\nA DMARC failure report.\r\n" +
		"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: " + feedbackType + "\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n\r\n" +
		"--f\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <" + returnPath + ">\r\nFrom: news@acme.test\r\nTo: pat@example.net\r\nSubject: Spring\r\n\r\n--f--\r\n"
}

// unreadRecord is a report as GET /api/v1/reports/unread lists it.
type unreadRecord struct {
	ID, Reason, Detail, Kind, Tenant, Client string
	FeedbackType                             string    `json:"feedback_type"`
	MessageID                                string    `json:"message_id"`
	MailFrom                                 string    `json:"mail_from"`
	ReceivedAt                               time.Time `json:"received_at"`
	Recipients                               []string
	Size                                     int64
	Truncated                                bool
}

// do sends a request to the admin API with token and returns the status,
// the Content-Type and the body.
func (e *relayEnv) do(method, path, token string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.r.AdminAddr()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestUnreadReportsAPI: reports sent over SMTP that Heed does not act on
// are listed for the operator, newest first, with why (and after a
// restart too); one downloads byte for byte and deletes (audited); a
// tenant's key and a path-traversal id are refused; each counts in
// heed_reports_unread_total, and the feedback about the tenant's message
// is the tenant's report.feedback event.
func TestUnreadReportsAPI(t *testing.T) {
	sink := testsink.Start(t, testsink.Options{})
	cfg := testConfig(t)
	cfg.Delivery.Routes = map[string]string{"example.net": sink.Addr()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &relayEnv{t: t, r: r, cfg: cfg, sink: sink, token: cfg.Admin.Tokens[0]}
	defer func() { e.r.Shutdown() }()
	user, pass, _ := e.tenantSetup()
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	verp := sink.Wait(t, 1, 20*time.Second)[0].From

	gibberish := "Subject: ???\r\n\r\ngibberish\r\n"
	stranger := arfOf("abuse", "someone@elsewhere.example")
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ to, msg string }{
		{"fbl@bounces.relay.test", gibberish},
		{"abuse@bounces.relay.test", stranger},
		{"fbl@bounces.relay.test", arfOf("auth-failure", verp)},
	} {
		if err := c.SendMail("", []string{m.to}, strings.NewReader(m.msg)); err != nil {
			t.Fatalf("to %s: %v", m.to, err)
		}
	}

	var page struct {
		Reports []unreadRecord
		Cursor  string
	}
	e.api("GET", "/api/v1/reports/unread", nil, http.StatusOK, &page)
	reasons := []string{}
	for _, rep := range page.Reports {
		reasons = append(reasons, rep.Reason)
	}
	if strings.Join(reasons, " ") != "feedback unknown-message unparsable" || page.Cursor != "" {
		t.Fatalf("listed %v (cursor %q), want feedback, unknown-message, unparsable, newest first", reasons, page.Cursor)
	}
	fb, unknown, unparsable := page.Reports[0], page.Reports[1], page.Reports[2]
	if fb.FeedbackType != "auth-failure" || fb.Kind != "feedback" || fb.Tenant != "acme" || fb.MessageID == "" ||
		fb.Client != "127.0.0.1" || fb.MailFrom != "" || len(fb.Recipients) != 1 || fb.Recipients[0] != "fbl@bounces.relay.test" {
		t.Errorf("the feedback report is listed as %+v", fb)
	}
	if !strings.Contains(unparsable.Detail, "unparsable") || unparsable.Size != int64(len(gibberish)) || unparsable.Truncated {
		t.Errorf("the unreadable report is listed as %+v", unparsable)
	}
	var second struct {
		Reports []unreadRecord
		Cursor  string
	}
	e.api("GET", "/api/v1/reports/unread?limit=1&cursor="+page.Reports[0].ID, nil, http.StatusOK, &second)
	if len(second.Reports) != 1 || second.Reports[0].ID != unknown.ID || second.Cursor != unknown.ID {
		t.Errorf("the page after the newest: %+v, want the unknown-message report and a cursor", second)
	}

	// Download: the bytes sent, as an attachment.
	code, h, body := e.do("GET", "/api/v1/reports/unread/"+unknown.ID, e.token)
	if code != 200 || h.Get("Content-Type") != "message/rfc822" || !strings.HasPrefix(h.Get("Content-Disposition"), "attachment") ||
		!bytes.Equal(body, []byte(stranger)) {
		t.Errorf("download: %d %s %q, %d bytes (want the %d sent)", code, h.Get("Content-Type"), h.Get("Content-Disposition"), len(body), len(stranger))
	}

	// A tenant's key sees none of it; ids outside the scheme are 404.
	var key struct{ Key string }
	e.api("POST", "/api/v1/tenants/acme/api-keys", map[string]string{}, http.StatusCreated, &key)
	for _, path := range []string{"/api/v1/reports/unread", "/api/v1/reports/unread/" + unknown.ID} {
		if code, h, body := e.do("GET", path, key.Key); code != 403 || h.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s with a tenant key: %d %s %s, want 403 problem", path, code, h.Get("Content-Type"), body)
		}
	}
	if code, _, _ := e.do("DELETE", "/api/v1/reports/unread/"+unknown.ID, key.Key); code != 403 {
		t.Errorf("DELETE with a tenant key: %d, want 403", code)
	}
	for _, id := range []string{"..%2F..%2Fheed.db", "..%2F..%2Fkeys%2Fserver.key", ".." + unknown.ID[2:], strings.ToUpper(unknown.ID)} {
		code, h, body := e.do("GET", "/api/v1/reports/unread/"+id, e.token)
		if code != 404 || h.Get("Content-Type") != "application/problem+json" || bytes.Contains(body, []byte("SQLite")) {
			t.Errorf("GET .../unread/%s: %d %s, want a 404 problem", id, code, h.Get("Content-Type"))
		}
	}
	if code, _, _ := e.do("GET", "/api/v1/reports/unread?cursor=..%2F..", e.token); code != 400 {
		t.Errorf("a forged cursor: %d, want 400", code)
	}

	// The operator sees them on /metrics; the tenant gets its event.
	e.waitMetrics(`heed_reports_unread_total{node="`+e.cfg.Node+`",reason="feedback"} 1`, `heed_reports_unread_total{node="`+e.cfg.Node+`",reason="unknown-message"} 1`,
		`heed_reports_unread_total{node="`+e.cfg.Node+`",reason="unparsable"} 1`)
	var evs struct {
		Events []struct {
			Type string
			Data struct {
				MessageID                  string `json:"message_id"`
				Recipient, Reason, Channel string
			}
		}
	}
	e.api("GET", "/api/v1/tenants/acme/events?type=report.feedback", nil, http.StatusOK, &evs)
	if len(evs.Events) != 1 || evs.Events[0].Data.Reason != "auth-failure" || evs.Events[0].Data.Recipient != "pat@example.net" ||
		evs.Events[0].Data.MessageID != fb.MessageID {
		t.Errorf("report.feedback events %+v, want one about pat@example.net with reason auth-failure", evs.Events)
	}

	// Delete one, audited.
	e.api("DELETE", "/api/v1/reports/unread/"+unknown.ID, nil, http.StatusNoContent, nil)
	if code, _, _ := e.do("GET", "/api/v1/reports/unread/"+unknown.ID, e.token); code != 404 {
		t.Errorf("GET of a deleted report: %d, want 404", code)
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.DataDir, "reports", "unread", unknown.ID+".*")); len(left) != 0 {
		t.Errorf("files left after the deletion: %v", left)
	}
	var audit struct {
		Records []struct{ Action, Target string }
	}
	e.api("GET", "/api/v1/audit?limit=1000", nil, http.StatusOK, &audit)
	found := false
	for _, rec := range audit.Records {
		found = found || rec.Action == "DELETE /api/v1/reports/unread/:id" && strings.HasSuffix(rec.Target, unknown.ID)
	}
	if !found {
		t.Errorf("no audit record of the deletion in %+v", audit.Records)
	}

	// After a restart the reasons are still there.
	c.Quit() // an open session would hold the shutdown
	e.r.Shutdown()
	if e.r, err = Start(cfg, log); err != nil {
		t.Fatal(err)
	}
	var after struct{ Reports []unreadRecord }
	e.api("GET", "/api/v1/reports/unread", nil, http.StatusOK, &after)
	if len(after.Reports) != 2 || after.Reports[0].ID != fb.ID || after.Reports[0].Reason != "feedback" ||
		after.Reports[0].FeedbackType != "auth-failure" || !after.Reports[0].ReceivedAt.Equal(fb.ReceivedAt) ||
		after.Reports[1].Reason != "unparsable" {
		t.Errorf("after a restart: %+v", after.Reports)
	}
}

// TestUnreadReportsErased: a privacy erasure of an address deletes the
// reports that mention it, the record with the report, also when only the
// record names it (the envelope sender).
func TestUnreadReportsErased(t *testing.T) {
	e := startRelay(t)
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct{ from, msg string }{
		{"", "Subject: ???\r\nTo: kim@example.net\r\n\r\ngibberish\r\n"},
		{"kim@example.net", "Subject: ???\r\n\r\nnothing about anyone\r\n"},
		{"", "Subject: ???\r\n\r\nabout nobody\r\n"},
	} {
		if err := c.SendMail(m.from, []string{"fbl@bounces.relay.test"}, strings.NewReader(m.msg)); err != nil {
			t.Fatal(err)
		}
	}
	var er struct{ Files int }
	e.api("DELETE", "/api/v1/privacy/kim@example.net", nil, http.StatusOK, &er)
	dir := filepath.Join(e.cfg.DataDir, "reports", "unread")
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		b, _ := os.ReadFile(filepath.Join(dir, de.Name()))
		if bytes.Contains(b, []byte("kim@example.net")) {
			t.Errorf("%s still names the erased address: %s", de.Name(), b)
		}
	}
	if len(des) != 2 {
		t.Errorf("%d files left, want the report about nobody and its record", len(des))
	}
	var page struct{ Reports []json.RawMessage }
	e.api("GET", "/api/v1/reports/unread", nil, http.StatusOK, &page)
	if len(page.Reports) != 1 {
		t.Errorf("%d reports listed after the erasure, want 1", len(page.Reports))
	}
}
