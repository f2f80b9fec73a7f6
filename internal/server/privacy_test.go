package server

import (
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// TestPrivacyErasure: Pat's address is everywhere (delivered mail, mail
// still queued, a one-click opt-out, a suppression added through the API,
// webhook attempts whose answers quote it, a report nobody could read, a
// soft bounce whose diagnostic quotes it);
// the export lists it, the erasure removes it: neither the raw database
// file nor any file under the data directory holds it in clear, and Pat's
// opt-out still stops marketing. On PostgreSQL no row of any table holds
// it, and the tables the erasure rewrote were vacuumed.
func TestPrivacyErasure(t *testing.T) { eachBackend(t, testPrivacyErasure) }

func testPrivacyErasure(t *testing.T, backend string) {
	const pat = "pat@example.net"
	var mu sync.Mutex
	hooks := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks++
		mu.Unlock()
		w.Write(body) // a receiver that echoes what it got: the attempt keeps it
	}))
	defer recv.Close()
	sinkOpts := testsink.Options{Reply: func(stage, _, rcpt string, attempt int) *smtp.SMTPError {
		if stage == "RCPT" && rcpt == pat && attempt > 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "<" + pat + "> try later"}
		}
		return nil
	}}
	e := startRelayOn(t, backend, sinkOpts, func(c *config.Config) { c.Webhooks.AllowPrivateTargets = true })
	user, pass, _ := e.tenantSetup()
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": recv.URL}, http.StatusCreated, nil)

	e.send(user, pass, []string{pat}, marketingMsg)
	got := e.sink.Wait(t, 1, 20*time.Second)[0]
	e.send(user, pass, []string{pat}, reminderMsg) // deferred: stays queued
	link := regexp.MustCompile(`<https://unsubscribe\.relay\.test(/u/[^>]+)>`).FindSubmatch(got.Data)
	resp, err := http.PostForm("http://"+e.r.PublicAddr()+string(link[1]), url.Values{"List-Unsubscribe": {"One-Click"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e.api("PUT", "/api/v1/tenants/acme/suppressions/"+pat, map[string]string{"list": "transactional", "reason": "manual"}, http.StatusCreated, nil)
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader("Subject: ???\r\n\r\nabout "+pat+"\r\n")); err != nil {
		t.Fatal(err)
	}
	full := "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; " + pat + "\r\nAction: failed\r\nStatus: 5.2.2\r\n" +
		"Diagnostic-Code: smtp; 552 5.2.2 <" + pat + ">: mailbox full\r\n\r\n--b--\r\n"
	if err := c.SendMail("", []string{got.From}, strings.NewReader(full)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Every event so far reached the endpoint (and its echo is recorded).
	var evs struct{ Events []any }
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.api("GET", "/api/v1/tenants/acme/events?limit=1000", nil, http.StatusOK, &evs)
		mu.Lock()
		n := hooks
		mu.Unlock()
		var d struct{ Deliveries []struct{ Status string } }
		e.api("GET", "/api/v1/tenants/acme/webhooks/default/deliveries?status=delivered", nil, http.StatusOK, &d)
		if n >= len(evs.Events) && len(d.Deliveries) == len(evs.Events) && len(evs.Events) >= 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks: %d of %d events delivered", n, len(evs.Events))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}

	var x struct {
		Address      string
		Suppressions []struct{ Tenant, Address, List, Reason string }
		Events       []struct{ Type string }
		Messages     []struct {
			MessageID string `json:"message_id"`
		}
		Files       []string
		SoftBounces []struct {
			Tenant  string
			Bounces []struct{ Reason, Diagnostic string }
		} `json:"soft_bounces"`
	}
	e.api("GET", "/api/v1/privacy/"+pat, nil, http.StatusOK, &x)
	if x.Address != pat || len(x.Suppressions) != 2 || len(x.Messages) != 2 || len(x.Files) != 1 || len(x.Events) < 5 {
		t.Fatalf("export: %+v", x)
	}
	if len(x.SoftBounces) != 1 || x.SoftBounces[0].Tenant != "acme" || len(x.SoftBounces[0].Bounces) != 1 ||
		x.SoftBounces[0].Bounces[0].Reason != "mailbox-full" || !strings.Contains(x.SoftBounces[0].Bounces[0].Diagnostic, pat) {
		t.Errorf("export of the soft bounces: %+v", x.SoftBounces)
	}
	var er map[string]any
	e.api("DELETE", "/api/v1/privacy/"+pat, nil, http.StatusOK, &er)
	t.Logf("erasure: %v", er)

	// Nothing in clear: the raw database file and every file of the data
	// directory.
	err = filepath.WalkDir(e.cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if i := bytes.Index(asciiLower(b), []byte(pat)); i >= 0 {
			lo, hi := max(0, i-200), min(len(b), i+60)
			t.Errorf("%s holds the erased address: %q", p, b[lo:hi])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if backend == config.DriverPostgres {
		dsn := e.cfg.Storage.Postgres.DSN
		for _, row := range pgtest.Holding(t, dsn, pat) {
			t.Errorf("a row still holds the erased address: %s", row)
		}
		vacuumed := pgtest.Strings(t, dsn, "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL")
		for _, table := range []string{"suppressions", "events", "deliveries", "bodies", "webhook_deliveries", "audit"} {
			if !slices.Contains(vacuumed, table) {
				t.Errorf("table %s was not vacuumed after the erasure (vacuumed: %v)", table, vacuumed)
			}
		}
	}
	// The promise holds: marketing to Pat is still suppressed, by the hash.
	if text := e.send(user, pass, []string{pat}, marketingMsg); !strings.Contains(text, "1 of 1 recipients are suppressed") {
		t.Errorf("after the erasure: %q", text)
	}
	// And the audit log has the erasure, without the address.
	var audit struct {
		Records []struct{ Action, Target string }
	}
	e.api("GET", "/api/v1/audit", nil, http.StatusOK, &audit)
	last := audit.Records[len(audit.Records)-1]
	if last.Action != "DELETE /api/v1/privacy/:address" || strings.Contains(last.Target, "pat") {
		t.Errorf("audit of the erasure: %+v", last)
	}
}

// asciiLower lowercases ASCII letters only, keeping every byte's place (a
// database file is not UTF-8).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
