package server

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// TestMetrics: after a message to two recipients (one delivered, one
// opted out with one click before a second message), /metrics on the
// admin listener counts them as a scraper reads them. What the node
// counted or holds carries its name (config node), so that the series of
// several nodes stay apart; what is read from the database all nodes
// share (queue depth, webhook backlog, the tenants' rates) does not.
func TestMetrics(t *testing.T) {
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) { c.Node = "heed-2" })
	user, pass, _ := e.tenantSetup()
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	got := e.sink.Wait(t, 1, 20*time.Second)[0]
	link := regexp.MustCompile(`<https://unsubscribe\.relay\.test(/u/[^>]+)>`).FindSubmatch(got.Data)
	resp, err := http.PostForm("http://"+e.r.PublicAddr()+string(link[1]), url.Values{"List-Unsubscribe": {"One-Click"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)

	e.waitMetrics(
		`heed_messages_total{node="heed-2",outcome="accepted",tenant="acme"} 1`,
		`heed_messages_total{node="heed-2",outcome="delivered",tenant="acme"} 1`,
		`heed_messages_total{node="heed-2",outcome="suppressed",tenant="acme"} 1`,
		`heed_optouts_total{channel="one-click",node="heed-2"} 1`,
		`heed_delivery_latency_seconds_count{node="heed-2"} 1`,
		`heed_queue_depth 0`,
		`heed_smtp_sessions_total{node="heed-2"} 2`,
		`heed_smtp_sessions{node="heed-2"} 0`, // both closed
		`heed_webhook_backlog 0`,
		`heed_tenant_bounce_rate{tenant="acme"} 0`,
		`heed_events_total{node="heed-2",type="recipient.unsubscribed"} 1`,
		`go_goroutines{node="heed-2"} >0`,
	)
	// Without the operator token: 401 (the metrics name every tenant).
	if resp, err := http.Get("http://" + e.r.AdminAddr() + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("/metrics without a token: %v %v", resp.Status, err)
	}
}

// TestMetricsCountWaitingWork: the gauges of waiting work are not stuck at
// zero: a message its destination defers stays in the queue, and its
// events wait for a webhook endpoint that is down.
func TestMetricsCountWaitingWork(t *testing.T) {
	sinkOpts := testsink.Options{Reply: func(stage, _, _ string, _ int) *smtp.SMTPError {
		if stage == testsink.StageData {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}}
	e := startRelayWith(t, sinkOpts, func(c *config.Config) { c.Webhooks.AllowPrivateTargets = true })
	user, pass, _ := e.tenantSetup()
	// An endpoint nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String() + "/hooks"
	l.Close()
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": down}, http.StatusCreated, nil)
	e.send(user, pass, []string{"pat@example.net"}, reminderMsg)
	e.waitMetrics(
		`heed_messages_total{node="`+e.cfg.Node+`",outcome="deferred",tenant="acme"} 1`,
		`heed_queue_depth 1`,
		`heed_webhook_backlog >0`,
	)
}

// waitMetrics reads /metrics with the operator token until every line is
// there, and fails after ten seconds naming the first one missing. A line
// "name >0" stands for the series name with any value above zero.
func (e *relayEnv) waitMetrics(lines ...string) {
	e.t.Helper()
	var res []*regexp.Regexp
	for _, l := range lines {
		if name, ok := strings.CutSuffix(l, " >0"); ok {
			res = append(res, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+` [1-9][0-9.e+]*$`))
			continue
		}
		res = append(res, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(l)+`$`))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+e.r.AdminAddr()+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			e.t.Fatalf("/metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		missing := ""
		for i, re := range res {
			if !re.Match(b) {
				missing = lines[i]
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("/metrics lacks %q:\n%s", missing, grepHeed(string(b)))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

func grepHeed(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "heed_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
