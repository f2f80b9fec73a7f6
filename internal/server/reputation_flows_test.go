package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dnstest"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/testsink"
)

// complain sends an ARF report (RFC 5965) of copy's recipient to the
// inbound listener, as a mailbox provider's feedback loop does: to the
// VERP return path the copy carried. The inbound listener answers after
// the complaint committed, so the caller may read its effect at once.
func (e *relayEnv) complain(copy testsink.Message) {
	e.t.Helper()
	arf := "From: fbl@mailbox.example\r\nTo: fbl@bounces.relay.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n" +
		"--f\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n\r\n" +
		"--f\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <" + copy.From + ">\r\nFrom: news@acme.test\r\nTo: " +
		copy.To[0] + "\r\nSubject: Spring cleaning offer\r\n\r\n--f--\r\n"
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader(arf)); err != nil {
		e.t.Fatalf("the complaint about %s: %v", copy.To[0], err)
	}
}

// finalCounted waits until the tenant's 24-hour window holds n final
// attempts, and returns its figures.
func (e *relayEnv) finalCounted(n int64) (final, hard, delivered, complaints int64) {
	e.t.Helper()
	var rep struct {
		Windows []struct {
			Final       int64
			HardBounces int64 `json:"hard_bounces"`
			Delivered   int64
			Complaints  int64
		}
	}
	waitFor(e.t, "the final attempts counted", func() bool {
		e.api("GET", "/api/v1/tenants/acme/reputation", nil, http.StatusOK, &rep)
		return rep.Windows[0].Final >= n
	})
	w := rep.Windows[0]
	return w.Final, w.HardBounces, w.Delivered, w.Complaints
}

// TestReadinessComplaintRateFromCounts: the readiness report's
// complaint_rate reads what the relay counted: deliveries recorded by the
// queue and complaints by the inbound listener's ARF path. With nothing
// delivered it is ok; 1 complaint in 1,000 delivered (0.1%) warns, and a
// second report of the same address does not change it; 3 in 1,000
// (0.3%) fails.
func TestReadinessComplaintRateFromCounts(t *testing.T) {
	dns := dnstest.Start(t) // nothing published: the DNS checks fail, which is not the point here
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) { c.Readiness.DNSServer = dns.Addr })
	user, pass, _ := e.tenantSetup()
	check := func(status string, found ...string) {
		t.Helper()
		var rep struct {
			Checks []struct{ Name, Status, Found string }
		}
		e.api("GET", "/api/v1/tenants/acme/domains/acme.test/readiness", nil, http.StatusOK, &rep)
		for _, c := range rep.Checks {
			if c.Name == "complaint_rate" {
				if c.Status != status || !containsAll(c.Found, found...) {
					t.Fatalf("complaint_rate %s %q, want %s %q", c.Status, c.Found, status, found)
				}
				return
			}
		}
		t.Fatalf("no complaint_rate check in %+v", rep.Checks)
	}
	check("ok", "0 complaints in 0 delivered")

	e.send(user, pass, []string{"pat@example.net", "sam@example.net", "kim@example.net"}, marketingMsg)
	copies := e.sink.Wait(t, 3, 20*time.Second)
	e.finalCounted(3)
	check("ok", "0 complaints in 3 delivered")

	// 997 more deliveries, counted as the queue counts a delivery, in a
	// transaction of the relay's own store: 1,000 in all.
	err := e.r.st.reputation.Update(context.Background(), func(tx reputation.Tx) error {
		for range 997 {
			if err := reputation.Count(tx.Reputation(), "acme", "acme.test", time.Now(), true, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byRcpt := map[string]testsink.Message{}
	for _, c := range copies {
		byRcpt[c.To[0]] = c
	}
	e.complain(byRcpt["sam@example.net"])
	check("warn", "1 complaints in 1000 delivered", "(0.10%)")
	e.complain(byRcpt["sam@example.net"]) // reported again: counts once
	check("warn", "1 complaints in 1000 delivered")
	e.complain(byRcpt["kim@example.net"])
	e.complain(byRcpt["pat@example.net"])
	check("fail", "3 complaints in 1000 delivered", "(0.30%)")
}

// TestReputationWarningWebhook: a tenant's hard bounces past the warning
// level, over the minimum volume and under the pause level, reach its
// webhook endpoint as one tenant.reputation_warning, signed with the
// endpoint's secret and carrying the rate, its counts and the level; the
// messages that bounce after it, each judged by the guard, send no
// other warning; nothing is paused.
func TestReputationWarningWebhook(t *testing.T) {
	var (
		mu       sync.Mutex
		secret   string
		bad      []string
		received []string
		warnings []map[string]any
	)
	recv := hookReceiver(&mu, &secret, &bad, func(typ string, data map[string]any) {
		received = append(received, typ)
		if typ == "tenant.reputation_warning" {
			warnings = append(warnings, data)
		}
	})
	defer recv.Close()
	sinkOpts := testsink.Options{Reply: func(stage, _, rcpt string, _ int) *smtp.SMTPError {
		if stage == "RCPT" && strings.HasPrefix(rcpt, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
	e := startRelayWith(t, sinkOpts, func(c *config.Config) {
		c.Webhooks.AllowPrivateTargets = true
		c.Reputation.MinFinalAttempts = 4 // the default 100 is TestGuardThresholds' point
		c.Reputation.WarnBounceRate, c.Reputation.PauseBounceRate = 0.2, 0.9
	})
	user, pass, _ := e.tenantSetup()
	var hook struct{ Secret string }
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": recv.URL + "/hooks"}, http.StatusCreated, &hook)
	mu.Lock()
	secret = hook.Secret
	mu.Unlock()

	// Each message's outcome is judged before the next is sent, as a
	// relay busy enough to judge between messages would: a guard that
	// warned once per judgement would warn for each.
	judge := func() {
		t.Helper()
		if err := e.r.rep.guard.Evaluate(context.Background(), "acme"); err != nil {
			t.Fatal(err)
		}
	}
	e.send(user, pass, []string{"pat@example.net", "sam@example.net", "gone1@example.net"}, reminderMsg)
	e.finalCounted(3) // 1 of 3: over the level, under the volume
	judge()
	steps := []struct {
		rcpt  string
		final int64
	}{{"gone2@example.net", 4}, {"gone3@example.net", 5}, {"kim@example.net", 6}, {"gone4@example.net", 7}}
	for _, s := range steps {
		e.send(user, pass, []string{s.rcpt}, reminderMsg)
		e.finalCounted(s.final)
		judge()
	}
	if _, paused := e.r.rep.guard.Paused("acme"); paused {
		t.Fatal("paused under the pause level")
	}

	// Every event of the tenant reaches the endpoint before the count.
	var evs struct{ Events []struct{ Type string } }
	e.api("GET", "/api/v1/tenants/acme/events?limit=1000", nil, http.StatusOK, &evs)
	waitFor(t, "every event at the endpoint", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) >= len(evs.Events)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("webhooks not signed with the endpoint's secret: %v", bad)
	}
	if len(warnings) != 1 {
		t.Fatalf("%d tenant.reputation_warning webhooks, want 1 (once per crossing): %v", len(warnings), warnings)
	}
	rate, _ := warnings[0]["rate"].(map[string]any)
	if warnings[0]["tenant"] != "acme" || rate["metric"] != "bounce" || rate["count"] != 2.0 || rate["of"] != 4.0 ||
		rate["threshold"] != 0.2 || !strings.Contains(warnings[0]["reason"].(string), "warning level 20%") {
		t.Errorf("the warning's data: %v", warnings[0])
	}
}
