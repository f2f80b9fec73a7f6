package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// submit runs a whole submission of msg to rcpt on a new connection and
// returns the first refusal (nil when the DATA got its 250).
func (e *relayEnv) submit(user, pass, rcpt, msg string) error {
	c, err := smtp.Dial(e.r.SubmissionAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		return err
	}
	return c.SendMail("app@acme.test", []string{rcpt}, strings.NewReader(strings.ReplaceAll(msg, "\n", "\r\n")))
}

// status GETs or POSTs url and returns the status and the body.
func status(t *testing.T, method, url, token, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestDatabaseOutage: while PostgreSQL is down, nothing gets a 250 or a
// 2xx it has not committed: a session already open gets 451 4.3.0
// naming the database for its transaction; once the node's health probe
// has seen the outage, /readyz says not ready and what failed, a new SMTP
// connection gets 421 4.3.2 instead of a greeting, a one-click opt-out
// 503, and the admin API 503 problem+json, while /metrics still answers
// with heed_database_up 0. When the database comes back, the same relay,
// never restarted, accepts the same submission and delivers it, and
// records the opt-out.
func TestDatabaseOutage(t *testing.T) {
	cluster := pgtest.New(t) // its own, to stop
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		c.Storage.Driver = config.DriverPostgres
		c.Storage.Postgres.DSN = cluster.NewDatabase(t)
	})
	user, pass, _ := e.tenantSetup()
	first := queuedID(t, e.send(user, pass, []string{"pat@example.net"}, marketingMsg))
	link := regexp.MustCompile(`<https://unsubscribe\.relay\.test(/u/[A-Za-z0-9_-]+)>`).FindSubmatch(e.sink.Wait(t, 1, 20*time.Second)[0].Data)
	if link == nil {
		t.Fatal("no one-click link in the delivered newsletter")
	}
	oneClick := "http://" + e.r.PublicAddr() + string(link[1])
	readyz := "http://" + e.r.AdminAddr() + "/readyz"
	if code, _, body := status(t, "GET", readyz, "", ""); code != http.StatusOK {
		t.Fatalf("/readyz before the outage = %d %s", code, body)
	}

	// The attempt's outcome is committed after the sink's 250: wait for
	// it, or the outage would make the first message go out again.
	e.waitState(first, "delivered")
	open, err := smtp.Dial(e.r.SubmissionAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := open.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		t.Fatal(err)
	}
	cluster.Stop()
	err = open.SendMail("app@acme.test", []string{"sam@example.net"}, strings.NewReader(strings.ReplaceAll(reminderMsg, "\n", "\r\n")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) || !strings.Contains(se.Message, "database is unavailable") {
		t.Fatalf("a transaction in a session open before the outage: %v, want 451 4.3.0 saying the database is unavailable", err)
	}

	// The probe notices within its period; wait for it as a load
	// balancer would.
	code, ctype, body := waitStatus(t, readyz, http.StatusServiceUnavailable)
	if ctype != "application/problem+json" || !strings.Contains(body, "the database: unreachable") {
		t.Errorf("/readyz during the outage = %d %s %s, want 503 problem+json saying the database is unreachable", code, ctype, body)
	}
	err = e.submit(user, pass, "sam@example.net", reminderMsg)
	if !errors.As(err, &se) || se.Code != 421 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 2}) || !strings.Contains(se.Message, "cannot reach its database") {
		t.Fatalf("a new submission during the outage: %v, want 421 4.3.2 saying the database cannot be reached", err)
	}
	code, _, _ = status(t, "POST", oneClick, "", "List-Unsubscribe=One-Click")
	if code != http.StatusServiceUnavailable {
		t.Errorf("one-click POST during the outage = %d, want 503", code)
	}
	code, ctype, body = status(t, "GET", "http://"+e.r.AdminAddr()+"/api/v1/tenants/acme/suppressions", e.token, "")
	var p struct{ Status int }
	if code != http.StatusServiceUnavailable || ctype != "application/problem+json" || json.Unmarshal([]byte(body), &p) != nil || p.Status != 503 {
		t.Errorf("admin API during the outage = %d %s %s, want 503 problem+json", code, ctype, body)
	}
	code, _, body = status(t, "GET", "http://"+e.r.AdminAddr()+"/metrics", e.token, "")
	if code != http.StatusOK || !strings.Contains(body, "\nheed_database_up{") || !regexp.MustCompile(`(?m)^heed_database_up\{[^}]*\} 0$`).MatchString(body) {
		t.Errorf("/metrics during the outage = %d, want 200 with heed_database_up 0:\n%.2000s", code, body)
	}
	if n := len(e.sink.Messages()); n != 1 {
		t.Fatalf("%d messages delivered, want only the one before the outage", n)
	}

	if err := cluster.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The node takes new connections again once its probe reaches the
	// database; the first submission then is accepted: the backend drops
	// the dead connections and opens new ones on its own.
	waitStatus(t, readyz, http.StatusOK)
	if err := e.submit(user, pass, "sam@example.net", reminderMsg); err != nil {
		t.Fatalf("the same submission after the outage: %v, want 250", err)
	}
	msgs := e.sink.Wait(t, 2, 20*time.Second)
	if msgs[1].To[0] != "sam@example.net" || !strings.Contains(string(msgs[1].Data), "Your appointment") {
		t.Errorf("delivered after the outage: %v, want the reminder to sam", msgs[1].To)
	}
	if code, _, body := status(t, "POST", oneClick, "", "List-Unsubscribe=One-Click"); code != http.StatusOK {
		t.Errorf("one-click POST after the outage = %d %s", code, body)
	}
	if code, _, body := waitStatus(t, readyz, http.StatusOK); code != http.StatusOK {
		t.Errorf("/readyz after the outage = %d %s", code, body)
	}
	if text := e.send(user, pass, []string{"pat@example.net"}, marketingMsg); !strings.Contains(text, "1 of 1 recipients are suppressed") {
		t.Errorf("after the opt-out: %q, want pat suppressed", text)
	}
}

// waitStatus GETs url until it answers want, or fails the test after 20
// seconds; it returns the last answer.
func waitStatus(t *testing.T, url string, want int) (int, string, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, ctype, body := status(t, "GET", url, "", "")
		if code == want {
			return code, ctype, body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %s, want %d", url, code, body, want)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// waitState waits until every recipient of message id is in state.
func (e *relayEnv) waitState(id, state string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct{ Recipients []struct{ State string } }
		e.api("GET", "/api/v1/messages/"+id, nil, http.StatusOK, &st)
		done := len(st.Recipients) > 0
		for _, r := range st.Recipients {
			done = done && r.State == state
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("message %s: recipients %+v, want all %s", id, st.Recipients, state)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}
