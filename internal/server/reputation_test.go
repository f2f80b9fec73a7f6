package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// TestReputationGuardEndToEnd: a tenant whose hard bounces pass the pause
// level (over the minimum volume) is paused by the guard: its webhook
// hears tenant.paused with the figures, submission refuses its mail with
// 550 5.7.1 naming the rate and the threshold, GET …/reputation shows
// the counts; a tenant's key cannot resume it; the operator's resume is
// audited, heard as tenant.resumed, and its mail is accepted again.
func TestReputationGuardEndToEnd(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct{ Type string }
		json.Unmarshal(body, &p)
		mu.Lock()
		got = append(got, p.Type)
		mu.Unlock()
	}))
	defer recv.Close()
	sinkOpts := testsink.Options{Reply: func(stage, _, rcpt string, _ int) *smtp.SMTPError {
		if stage == "RCPT" && strings.HasPrefix(rcpt, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
	e := startRelayWith(t, sinkOpts, func(c *config.Config) {
		c.Webhooks.AllowPrivateTargets = true
		c.Reputation.MinFinalAttempts = 4 // the default 100 is the point of TestGuardThresholds
	})
	user, pass, _ := e.tenantSetup()
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": recv.URL + "/hooks"}, http.StatusCreated, nil)

	// Three messages below the volume: nothing trips, one bounced of three.
	e.send(user, pass, []string{"pat@example.net", "sam@example.net", "gone1@example.net"}, reminderMsg)
	e.sink.Wait(t, 2, 20*time.Second)
	var rep struct {
		Paused  bool
		Windows []struct {
			Window      string
			Final       int64
			HardBounces int64   `json:"hard_bounces"`
			BounceRate  float64 `json:"bounce_rate"`
		}
		Domains []struct{ Domain string }
	}
	waitFor(t, "three final attempts counted", func() bool {
		e.api("GET", "/api/v1/tenants/acme/reputation", nil, http.StatusOK, &rep)
		return rep.Windows[0].Final == 3
	})
	if rep.Paused || rep.Windows[0].HardBounces != 1 || len(rep.Domains) != 1 || rep.Domains[0].Domain != "acme.test" {
		t.Fatalf("below the minimum volume: %+v", rep)
	}
	// The fourth attempt, a hard bounce: 2 of 4, over the 10% pause level.
	e.send(user, pass, []string{"gone2@example.net"}, reminderMsg)
	waitFor(t, "the guard's pause", func() bool {
		e.api("GET", "/api/v1/tenants/acme/reputation", nil, http.StatusOK, &rep)
		return rep.Paused
	})
	se := e.refusal(user, pass, reminderMsg)
	if se == nil || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) ||
		!strings.Contains(se.Message, "bounce rate 50%") || !strings.Contains(se.Message, "pause level 10%") ||
		!strings.Contains(se.Message, "held, not lost") {
		t.Fatalf("a paused tenant's submission: %v", se)
	}

	// A tenant's own key may read its rates but not resume itself.
	var key struct{ Key string }
	e.api("POST", "/api/v1/tenants/acme/api-keys", map[string]string{}, http.StatusCreated, &key)
	op := e.token
	e.token = key.Key
	e.api("GET", "/api/v1/tenants/acme/reputation", nil, http.StatusOK, nil)
	e.api("POST", "/api/v1/tenants/acme/resume", nil, http.StatusForbidden, nil)
	e.token = op
	e.api("POST", "/api/v1/tenants/acme/resume", nil, http.StatusOK, nil)
	e.api("POST", "/api/v1/tenants/acme/resume", nil, http.StatusConflict, nil)
	if se := e.refusal(user, pass, reminderMsg); se != nil {
		t.Fatalf("refused after the resume: %v", se)
	}
	// A reason goes into an SMTP reply line and into the tenant's state
	// (jsonb on PostgreSQL): no line break, no NUL.
	for _, bad := range []string{"bought\x00list", "bought list\r\n250 2.0.0 ok"} {
		e.api("POST", "/api/v1/tenants/acme/pause", map[string]string{"reason": bad}, http.StatusBadRequest, nil)
	}
	e.api("POST", "/api/v1/tenants/acme/pause", map[string]string{"reason": "bought list"}, http.StatusOK, nil)
	if se := e.refusal(user, pass, reminderMsg); se == nil || !strings.Contains(se.Message, "bought list") {
		t.Fatalf("after a pause by hand: %v", se)
	}
	// Paused for all its mail (pause_scope tenant): refused at MAIL FROM,
	// before the client sends the message.
	c := e.dial(user, pass)
	err := c.Mail("app@acme.test", nil)
	c.Close()
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || !strings.Contains(se.Message, "bought list") {
		t.Fatalf("MAIL FROM of a paused tenant: %v, want 550 naming the reason", err)
	}

	var audit struct{ Records []struct{ Action string } }
	e.api("GET", "/api/v1/audit?limit=1000", nil, http.StatusOK, &audit)
	var actions []string
	for _, r := range audit.Records {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"POST /api/v1/tenants/:tenant/resume", "POST /api/v1/tenants/:tenant/pause"} {
		if !slices.Contains(actions, want) {
			t.Errorf("no audit record of %s in %v", want, actions)
		}
	}
	waitFor(t, "the webhooks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ty := range got {
			if ty == "tenant.paused" {
				n++
			}
		}
		return n == 2 && slices.Contains(got, "tenant.resumed")
	})
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after 20s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}
