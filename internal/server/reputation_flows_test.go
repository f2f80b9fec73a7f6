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

// bounceReport sends a DSN (RFC 3464) about copy's recipient to the
// VERP return path the copy carried, as the recipient's server does when
// it accepted the mail (the 250 Heed counted) and failed it later:
// Action failed with status and its diagnostic. The inbound listener
// answers after the bounce committed, so the caller may read its effect
// at once.
func (e *relayEnv) bounceReport(copy testsink.Message, status, diagnostic string) {
	e.t.Helper()
	dsn := "From: MAILER-DAEMON@mx.example.net\r\nTo: " + copy.From + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; " + copy.To[0] + "\r\nAction: failed\r\nStatus: " + status + "\r\n" +
		"Diagnostic-Code: smtp; " + diagnostic + "\r\n\r\n--b--\r\n"
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("", []string{copy.From}, strings.NewReader(dsn)); err != nil {
		e.t.Fatalf("the bounce of %s: %v", copy.To[0], err)
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

// TestDSNHardBouncesPauseTenant: hard bounces that come back by DSN after
// the recipient's server said 250 count in the tenant's bounce rate, and
// enough of them pause it, as hard bounces at delivery do. GET
// …/reputation shows each one at once, in the hour it arrived, without a
// second final attempt; the same DSN again and a soft one (mailbox full)
// count nothing; the second hard one, 2 of 4, passes the pause level and
// the guard pauses the tenant without being asked (the inbound listener
// touched it), so its next submission is refused naming the bounce rate.
func TestDSNHardBouncesPauseTenant(t *testing.T) {
	eachBackend(t, testDSNHardBouncesPauseTenant)
}

func testDSNHardBouncesPauseTenant(t *testing.T, backend string) {
	e := startRelayOn(t, backend, testsink.Options{}, func(c *config.Config) {
		c.Reputation.MinFinalAttempts = 4 // the default 100 is TestGuardThresholds' point
		c.Reputation.WarnBounceRate, c.Reputation.PauseBounceRate = 0.3, 0.5
	})
	user, pass, _ := e.tenantSetup()
	e.send(user, pass, []string{"pat@example.net", "sam@example.net", "kim@example.net", "lee@example.net"}, reminderMsg)
	copies := e.sink.Wait(t, 4, 20*time.Second)
	byRcpt := map[string]testsink.Message{}
	for _, c := range copies {
		byRcpt[c.To[0]] = c
	}
	if final, hard, delivered, _ := e.finalCounted(4); final != 4 || hard != 0 || delivered != 4 {
		t.Fatalf("after four deliveries: final %d, hard bounces %d, delivered %d", final, hard, delivered)
	}
	var rep struct {
		Windows []struct {
			Final       int64
			HardBounces int64 `json:"hard_bounces"`
			Delivered   int64
		}
		Domains []struct {
			Domain  string
			Windows []struct {
				HardBounces int64 `json:"hard_bounces"`
			}
		}
		Paused bool
		State  struct{ Metric string }
	}
	counted := func(hard int64, after string) {
		t.Helper()
		e.api("GET", "/api/v1/tenants/acme/reputation", nil, http.StatusOK, &rep)
		w := rep.Windows[0]
		if w.HardBounces != hard || w.Final != 4 || w.Delivered != 4 ||
			len(rep.Domains) != 1 || rep.Domains[0].Domain != "acme.test" || rep.Domains[0].Windows[0].HardBounces != hard {
			t.Fatalf("after %s: %+v, want %d hard bounces of 4 final attempts (4 delivered), on acme.test", after, rep, hard)
		}
	}
	hard := func(rcpt string) { e.bounceReport(byRcpt[rcpt], "5.1.1", "550 5.1.1 <"+rcpt+">: no such user") }

	hard("pat@example.net")
	counted(1, "a hard bounce by DSN")
	hard("pat@example.net") // resent or replayed
	counted(1, "the same DSN again")
	e.bounceReport(byRcpt["sam@example.net"], "5.2.2", "552 5.2.2 mailbox full")
	counted(1, "a soft bounce by DSN")
	if err := e.r.rep.guard.Evaluate(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	if _, paused := e.r.rep.guard.Paused("acme"); paused {
		t.Fatal("paused at 1 hard bounce of 4 (25%), under the pause level 50%")
	}

	hard("kim@example.net")
	counted(2, "a second hard bounce by DSN")
	waitFor(t, "the guard's pause", func() bool {
		e.api("GET", "/api/v1/tenants/acme/reputation", nil, http.StatusOK, &rep)
		return rep.Paused
	})
	if rep.State.Metric != "bounce" {
		t.Errorf("paused for %q, want bounce", rep.State.Metric)
	}
	se := e.refusal(user, pass, reminderMsg)
	if se == nil || se.Code != 550 || !strings.Contains(se.Message, "bounce rate 50%") {
		t.Fatalf("a paused tenant's submission: %v", se)
	}
}
