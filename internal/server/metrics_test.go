package server

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMetrics: after a message to two recipients (one delivered, one
// opted out with one click before a second message), /metrics on the
// admin listener counts them as a scraper reads them.
func TestMetrics(t *testing.T) {
	e := startRelay(t)
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

	want := []string{
		`heed_messages_total{outcome="accepted",tenant="acme"} 1`,
		`heed_messages_total{outcome="delivered",tenant="acme"} 1`,
		`heed_messages_total{outcome="suppressed",tenant="acme"} 1`,
		`heed_optouts_total{channel="one-click"} 1`,
		`heed_delivery_latency_seconds_count 1`,
		`heed_queue_depth 0`,
		`heed_smtp_sessions_total 2`,
		`heed_smtp_sessions 0`, // both closed
		`heed_webhook_backlog 0`,
		`heed_events_total{type="recipient.unsubscribed"} 1`,
	}
	// Without the operator token: 401 (the metrics name every tenant).
	if resp, err := http.Get("http://" + e.r.AdminAddr() + "/metrics"); err != nil || resp.StatusCode != 401 {
		t.Fatalf("/metrics without a token: %v %v", resp.Status, err)
	}
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+e.r.AdminAddr()+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("/metrics: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		body = string(b)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, grepHeed(body))
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
