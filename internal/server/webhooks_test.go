package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
	"github.com/heedmail/heed/webhooks"
)

// TestWebhooksHearEveryFlow: the sending app's endpoint, set with the
// contract's PUT /webhook, hears every kind of event from the relay's real
// flows (SMTP accept and delivery, a one-click opt-out and a resubscribe
// on the public listener, an ARF complaint on the inbound one), each
// signed with the secret the PUT returned.
func TestWebhooksHearEveryFlow(t *testing.T) { eachBackend(t, testWebhooksHearEveryFlow) }

func testWebhooksHearEveryFlow(t *testing.T, backend string) {
	var (
		mu   sync.Mutex
		got  = map[string][]map[string]any{} // type → data
		bad  []string
		seen = make(chan struct{}, 1)
	)
	var secret string
	recv := hookReceiver(&mu, &secret, &bad, func(typ string, data map[string]any) {
		got[typ] = append(got[typ], data)
		select {
		case seen <- struct{}{}:
		default:
		}
	})
	defer recv.Close()
	sinkOpts := testsink.Options{Reply: func(stage, _, rcpt string, _ int) *smtp.SMTPError {
		switch {
		case stage == "RCPT" && rcpt == "gone@example.net":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case stage == "RCPT" && rcpt == "busy@example.net":
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}}
	e := startRelayOn(t, backend, sinkOpts, func(c *config.Config) { c.Webhooks.AllowPrivateTargets = true })
	user, pass, _ := e.tenantSetup()
	var hook struct{ Secret string }
	e.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": recv.URL + "/hooks"}, http.StatusCreated, &hook)
	mu.Lock()
	secret = hook.Secret
	mu.Unlock()

	// accepted ×4, delivered (pat, sam), bounced and a bounce suppression
	// (gone), deferred (busy).
	e.send(user, pass, []string{"pat@example.net", "sam@example.net", "gone@example.net", "busy@example.net"}, marketingMsg)
	copies := e.sink.Wait(t, 2, 20*time.Second)
	var patCopy, samCopy testsink.Message
	for _, c := range copies {
		switch c.To[0] {
		case "pat@example.net":
			patCopy = c
		case "sam@example.net":
			samCopy = c
		}
	}
	// Pat opts out with one click, then resubscribes on the page.
	link := regexp.MustCompile(`<https://unsubscribe\.relay\.test(/u/[^>]+)>`).FindSubmatch(patCopy.Data)
	if link == nil {
		t.Fatalf("no one-click link in\n%s", patCopy.Data)
	}
	public := "http://" + e.r.PublicAddr() + string(link[1])
	for _, form := range []url.Values{{"List-Unsubscribe": {"One-Click"}}, {"action": {"resubscribe"}}} {
		resp, err := http.PostForm(public, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %v: %s", form, resp.Status)
		}
	}
	// Sam complains; mail to Sam is then suppressed.
	arf := "From: fbl@mailbox.example\r\nTo: fbl@bounces.relay.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n" +
		"--f\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n\r\n" +
		"--f\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <" + samCopy.From + ">\r\nFrom: news@acme.test\r\nTo: sam@example.net\r\nSubject: Spring cleaning offer\r\n\r\n--f--\r\n"
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader(arf)); err != nil {
		t.Fatal(err)
	}
	e.send(user, pass, []string{"sam@example.net"}, reminderMsg)

	want := map[string]string{
		"message.accepted": "pat@example.net", "message.delivered": "pat@example.net",
		"message.bounced": "gone@example.net", "message.deferred": "busy@example.net",
		"message.suppressed": "sam@example.net", "recipient.unsubscribed": "pat@example.net",
		"recipient.resubscribed": "pat@example.net", "recipient.complained": "sam@example.net",
		"suppression.added": "gone@example.net", "suppression.removed": "pat@example.net",
	}
	has := func(typ, rcpt string) bool {
		for _, d := range got[typ] {
			if d["recipient"] == rcpt && d["tenant"] == "acme" {
				return true
			}
		}
		return false
	}
	deadline := time.After(30 * time.Second)
	for {
		mu.Lock()
		missing := []string{}
		for typ, rcpt := range want {
			if !has(typ, rcpt) {
				missing = append(missing, typ+" for "+rcpt)
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			break
		}
		select {
		case <-seen:
		case <-deadline:
			t.Fatalf("the endpoint never heard: %v", missing)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bad {
		t.Error(b)
	}
	for _, d := range got["message.bounced"] {
		if reply, _ := d["reply"].(string); !strings.Contains(reply, "5.1.1") {
			t.Errorf("the bounce event carries reply %q, want the remote 550 5.1.1", reply)
		}
	}
}

// hookReceiver is a webhook endpoint for the tests. Under mu, it checks
// each webhook's signature with *secret and hands its type and data to
// heard; what fails the check or does not parse goes to *bad.
func hookReceiver(mu *sync.Mutex, secret *string, bad *[]string, heard func(typ string, data map[string]any)) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhooks.Verify(*secret, r.Header, body, time.Minute, time.Now()); err != nil {
			*bad = append(*bad, err.Error())
		}
		var p struct {
			Type string
			Data map[string]any
		}
		if err := json.Unmarshal(body, &p); err != nil {
			*bad = append(*bad, err.Error())
		}
		heard(p.Type, p.Data)
	}))
}
