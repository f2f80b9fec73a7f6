package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/dkim/dkimtest"
	"github.com/heedmail/heed/internal/testsink"
	"github.com/heedmail/heed/suppression"
)

// relayEnv is a whole relay started as `heed serve` starts it, delivering
// every example.net recipient to a testsink.
type relayEnv struct {
	t     *testing.T
	r     *Relay
	cfg   *config.Config
	sink  *testsink.Sink
	token string
}

func startRelay(t *testing.T) *relayEnv {
	t.Helper()
	return startRelayWith(t, testsink.Options{}, nil)
}

// startRelayWith starts a relay delivering to a sink with sinkOpts, after
// edit (when not nil) changed its configuration.
func startRelayWith(t *testing.T, sinkOpts testsink.Options, edit func(*config.Config)) *relayEnv {
	t.Helper()
	sink := testsink.Start(t, sinkOpts)
	cfg := testConfig(t)
	cfg.Delivery.Routes = map[string]string{"example.net": sink.Addr()}
	if edit != nil {
		edit(cfg)
	}
	r, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Shutdown)
	return &relayEnv{t: t, r: r, cfg: cfg, sink: sink, token: cfg.Admin.Tokens[0]}
}

// api calls the admin API and decodes the JSON answer into out.
func (e *relayEnv) api(method, path string, body any, want int, out any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+e.r.AdminAddr()+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

type dnsRecord struct{ Type, Name, Value, Purpose string }

// tenantSetup creates tenant acme with domain acme.test and returns its
// SMTP credential and the DNS records the API asked to publish.
func (e *relayEnv) tenantSetup() (user, pass string, records []dnsRecord) {
	e.api("POST", "/api/v1/tenants", map[string]string{
		"id": "acme", "name": "Acme Dental", "postal_address": "12 High Street, Springfield <Suite 3>",
	}, http.StatusCreated, nil)
	var dom struct {
		DNSRecords []dnsRecord `json:"dns_records"`
	}
	e.api("POST", "/api/v1/tenants/acme/domains", map[string]string{"domain": "acme.test"}, http.StatusCreated, &dom)
	var cred struct{ Username, Password string }
	e.api("POST", "/api/v1/tenants/acme/credentials", map[string]string{}, http.StatusCreated, &cred)
	return cred.Username, cred.Password, dom.DNSRecords
}

// dial opens a submission session authenticated as user; the caller
// closes it.
func (e *relayEnv) dial(user, pass string) *smtp.Client {
	e.t.Helper()
	c, err := smtp.Dial(e.r.SubmissionAddr())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		c.Close()
		e.t.Fatal(err)
	}
	return c
}

// send submits one message and returns the 250's text.
func (e *relayEnv) send(user, pass string, to []string, msg string) string {
	e.t.Helper()
	c := e.dial(user, pass)
	defer c.Close()
	if err := c.Mail("app@acme.test", nil); err != nil {
		e.t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		e.t.Fatal(err)
	}
	io.WriteString(w, strings.ReplaceAll(msg, "\n", "\r\n"))
	resp, err := w.CloseWithResponse()
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusText
}

// refusal submits msg from app@acme.test to pat@example.net on a new
// connection and returns the refusal, nil when it was accepted.
func (e *relayEnv) refusal(user, pass, msg string) *smtp.SMTPError {
	e.t.Helper()
	c := e.dial(user, pass)
	defer c.Close()
	err := c.SendMail("app@acme.test", []string{"pat@example.net"}, strings.NewReader(strings.ReplaceAll(msg, "\n", "\r\n")))
	if err == nil {
		return nil
	}
	se, ok := err.(*smtp.SMTPError)
	if !ok {
		e.t.Fatalf("submitting: %v", err)
	}
	return se
}

// lookup answers DKIM key queries from the records the API returned: the
// fake DNS at the edge of the world.
func lookup(records []dnsRecord) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		for _, r := range records {
			if r.Type == "TXT" && strings.EqualFold(r.Name, name) {
				return []string{r.Value}, nil
			}
		}
		return nil, fmt.Errorf("no TXT record at %s", name)
	}
}

func queuedID(t *testing.T, text string) string {
	t.Helper()
	m := regexp.MustCompile(`queued as ([0-9a-z]+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no queue id in %q", text)
	}
	return m[1]
}

const marketingMsg = `From: Acme Dental <news@acme.test>
To: pat@example.net
Subject: Spring cleaning offer
X-Heed-List: marketing
List-Unsubscribe: <https://app.example/unsub?evil=1>
Content-Type: text/plain; charset=utf-8

Book a cleaning this month and save 20%.
`

const reminderMsg = `From: Acme Dental <frontdesk@acme.test>
To: pat@example.net
Subject: Your appointment tomorrow at 10:00
Content-Type: text/plain; charset=utf-8

See you tomorrow at 10:00.
`

// TestMarketingMailArrivesCompliant is the "done when": a
// marketing message arrives with one-click headers covered by valid DKIM
// signatures (RSA and Ed25519, checked against the records the domain API
// returned), a working opt-out link and the postal address; after the
// recipient opts out of marketing, marketing to them stops at once while
// their appointment reminders still arrive.
func TestMarketingMailArrivesCompliant(t *testing.T) {
	eachBackend(t, testMarketingMailArrivesCompliant)
}

func testMarketingMailArrivesCompliant(t *testing.T, backend string) {
	e := startRelayOn(t, backend, testsink.Options{}, nil)
	user, pass, records := e.tenantSetup()

	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	got := e.sink.Wait(t, 1, 20*time.Second)[0]

	results, err := dkim.Verify(got.Data, lookup(records))
	if err != nil {
		t.Fatal(err)
	}
	algs := map[string]bool{}
	for _, r := range results {
		if r.Err != nil {
			t.Errorf("signature %s/%s does not verify: %v", r.Domain, r.Selector, r.Err)
		}
		if r.Domain != "acme.test" {
			t.Errorf("signed for d=%s, want the From domain acme.test", r.Domain)
		}
		algs[string(r.Algorithm)] = true
	}
	if !algs[string(dkim.RSA)] || !algs[string(dkim.Ed25519)] || len(results) != 2 {
		t.Errorf("signatures %+v, want one RSA and one Ed25519", results)
	}

	mr, err := mail.CreateReader(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	h := mr.Header
	lu := h.Values("List-Unsubscribe")
	if len(lu) != 1 || strings.Contains(lu[0], "app.example") {
		t.Fatalf("List-Unsubscribe = %q, want Heed's one header (the app's removed)", lu)
	}
	m := regexp.MustCompile(`^<(https://unsubscribe\.relay\.test/u/[A-Za-z0-9_-]+)>, <mailto:([a-z0-9-]+)@unsubscribe\.relay\.test\?subject=unsubscribe>$`).
		FindStringSubmatch(lu[0])
	if m == nil {
		t.Fatalf("List-Unsubscribe = %q, want one HTTPS and one mailto URI", lu[0])
	}
	if len(m[2]) > 64 {
		t.Errorf("mailto local part is %d octets, RFC 5321 allows 64", len(m[2]))
	}
	if v := h.Get("List-Unsubscribe-Post"); v != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post = %q", v)
	}
	for _, sig := range h.Values("Dkim-Signature") {
		hTag := regexp.MustCompile(`(?:^|;)h=([^;]+)`).FindStringSubmatch(strings.Join(strings.Fields(sig), ""))
		if hTag == nil || !strings.Contains(strings.ToLower(hTag[1]), "list-unsubscribe-post") {
			t.Errorf("signature does not cover List-Unsubscribe-Post: %s", sig)
		}
	}
	if strings.Contains(m[1], "pat") {
		t.Errorf("the unsubscribe URL shows the address: %s", m[1])
	}
	// The token opens to this recipient and list, under the relay's keys.
	target, err := e.r.st.tokens.Parse(m[1][strings.LastIndex(m[1], "/")+1:])
	if err != nil || target != (suppression.Target{Tenant: "acme", List: "marketing", Address: "pat@example.net"}) {
		t.Errorf("token opens to %+v, %v", target, err)
	}
	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(p.Body)
	for _, want := range []string{"save 20%", m[1], "12 High Street, Springfield <Suite 3>"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}

	// Pat presses Gmail's unsubscribe button: an RFC 8058 POST to the
	// link in the header (served by the public listener; the test reaches
	// it at its loopback address). The next newsletter is not sent to pat,
	// and the app is told so at once.
	oneClick := "http://" + e.r.PublicAddr() + strings.TrimPrefix(m[1], "https://unsubscribe.relay.test")
	resp, err := http.Post(oneClick, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click POST: %d", resp.StatusCode)
	}
	text := e.send(user, pass, []string{"pat@example.net", "sam@example.net"}, marketingMsg)
	if !strings.Contains(text, "1 of 2 recipients are suppressed") {
		t.Errorf("250 text %q does not say a recipient is suppressed", text)
	}
	var status struct {
		Recipients []struct{ Address, State, Reason string }
	}
	e.api("GET", "/api/v1/messages/"+queuedID(t, text), nil, http.StatusOK, &status)
	if len(status.Recipients) != 2 || status.Recipients[0].State != "suppressed" || status.Recipients[0].Reason != "unsubscribe" {
		t.Errorf("recipients %+v, want pat suppressed (unsubscribe)", status.Recipients)
	}
	// The reminder is transactional: the marketing opt-out does not stop it.
	e.send(user, pass, []string{"pat@example.net"}, reminderMsg)
	// Deliveries run concurrently: find the reminder by its subject.
	msgs := e.sink.Wait(t, 3, 20*time.Second)
	toPat, reminders := 0, 0
	var reminder testsink.Message
	for _, m := range msgs {
		if m.To[0] == "pat@example.net" {
			toPat++
		}
		if bytes.Contains(m.Data, []byte("Subject: Your appointment")) {
			reminder = m
			reminders++
		}
	}
	if len(msgs) != 3 || toPat != 2 || reminders != 1 || reminder.To[0] != "pat@example.net" {
		t.Fatalf("sink got %d messages (%d to pat, %d reminders), want the first newsletter, sam's newsletter and pat's reminder",
			len(msgs), toPat, reminders)
	}
	rr, err := mail.CreateReader(bytes.NewReader(reminder.Data))
	if err != nil {
		t.Fatal(err)
	}
	if rr.Header.Has("List-Unsubscribe") || bytes.Contains(reminder.Data, []byte("12 High Street")) {
		t.Errorf("the reminder got marketing treatment:\n%s", reminder.Data)
	}
	if rs, err := dkim.Verify(reminder.Data, lookup(records)); err != nil || len(rs) != 2 || rs[0].Err != nil || rs[1].Err != nil {
		t.Errorf("reminder signatures: %+v %v", rs, err)
	}
}

// TestRelayedMailVerifiesWithDkimpy: mail as the relay sends it, marketing
// and transactional, verifies with dkimpy, an implementation independent
// of go-msgauth, against the records the domain API returned; a
// List-Unsubscribe added on the way breaks both signatures.
func TestRelayedMailVerifiesWithDkimpy(t *testing.T) {
	dkimtest.Require(t)
	e := startRelay(t)
	user, pass, records := e.tenantSetup()
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	e.send(user, pass, []string{"sam@example.net"}, reminderMsg)
	msgs := e.sink.Wait(t, 2, 20*time.Second)
	zone := map[string]string{}
	for _, r := range records {
		if r.Purpose == "dkim" {
			zone[r.Name] = r.Value
		}
	}
	tampered := bytes.Replace(msgs[1].Data, []byte("\r\n\r\n"),
		[]byte("\r\nList-Unsubscribe: <https://evil.example/u/x>\r\n\r\n"), 1)
	res := dkimtest.Verify(t, zone, msgs[0].Data, msgs[1].Data, tampered)
	for i, want := range []bool{true, true, false} {
		if len(res[i]) != 2 {
			t.Fatalf("message %d: dkimpy saw %d signatures, want 2", i, len(res[i]))
		}
		for _, r := range res[i] {
			if r.OK != want || r.D != "acme.test" {
				t.Errorf("message %d: dkimpy says %s d=%s ok=%v (%s), want ok=%v", i, r.A, r.D, r.OK, r.Error, want)
			}
		}
	}
}

// TestMarketingWithoutPostalAddressRefused: CAN-SPAM needs the postal
// address, so the app hears at SMTP time what to set.
func TestMarketingWithoutPostalAddressRefused(t *testing.T) {
	e := startRelay(t)
	user, pass, _ := e.tenantSetup()
	e.api("PATCH", "/api/v1/tenants/acme", map[string]string{"postal_address": ""}, http.StatusOK, nil)
	if err := e.refusal(user, pass, marketingMsg); err == nil || err.Code != 550 || err.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(err.Message, "postal_address") {
		t.Fatalf("got %v, want 550 5.7.1 naming postal_address", err)
	}
	// A reminder from the same tenant is still accepted.
	e.send(user, pass, []string{"pat@example.net"}, reminderMsg)
	e.sink.Wait(t, 1, 20*time.Second)

}

// TestMailtoOptOut: a reader who replies to the List-Unsubscribe mailto
// address is opted out of that list; the inbound listener takes mail only
// for Heed's own addresses and is never a relay.
func TestMailtoOptOut(t *testing.T) { eachBackend(t, testMailtoOptOut) }

func testMailtoOptOut(t *testing.T, backend string) {
	e := startRelayOn(t, backend, testsink.Options{}, nil)
	user, pass, _ := e.tenantSetup()
	e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	got := e.sink.Wait(t, 1, 20*time.Second)[0]
	mailto := regexp.MustCompile(`<mailto:([a-z0-9-]+@unsubscribe\.relay\.test)\?subject=unsubscribe>`).FindSubmatch(got.Data)
	if mailto == nil {
		t.Fatalf("no mailto URI in:\n%s", got.Data)
	}
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("mail.example.net"); err != nil {
		t.Fatal(err)
	}
	// Never a relay; a forged address is unknown.
	if err := c.Mail("pat@example.net", nil); err != nil {
		t.Fatal(err)
	}
	for rcpt, code := range map[string]int{"someone@example.org": 550, "u-forged-0-aaaaaaaaaa@unsubscribe.relay.test": 550} {
		if err := c.Rcpt(rcpt, nil); err == nil || err.(*smtp.SMTPError).Code != code {
			t.Errorf("RCPT %s: %v, want %d", rcpt, err, code)
		}
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	msg := "From: pat@example.net\r\nTo: " + string(mailto[1]) + "\r\nSubject: unsubscribe\r\n\r\n\r\n"
	if err := c.SendMail("pat@example.net", []string{string(mailto[1])}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	text := e.send(user, pass, []string{"pat@example.net"}, marketingMsg)
	if !strings.Contains(text, "1 of 1 recipients are suppressed") {
		t.Errorf("after the mailto opt-out: %q", text)
	}
	var evs struct {
		Events []struct {
			Type string
			Data struct{ Channel, List string }
		}
	}
	e.api("GET", "/api/v1/tenants/acme/events?limit=1000", nil, http.StatusOK, &evs)
	found := false
	for _, ev := range evs.Events {
		found = found || ev.Type == "recipient.unsubscribed" && ev.Data.Channel == "mailto" && ev.Data.List == "marketing"
	}
	if !found {
		t.Error("no recipient.unsubscribed event from the mailto channel")
	}
}

// TestBounceAndComplaintByMail: a DSN to the VERP return path of a copy
// (a permanent failure) and an ARF report to the feedback-loop address
// suppress those recipients for every list of the tenant.
func TestBounceAndComplaintByMail(t *testing.T) {
	eachBackend(t, testBounceAndComplaintByMail)
}

func testBounceAndComplaintByMail(t *testing.T, backend string) {
	e := startRelayOn(t, backend, testsink.Options{}, nil)
	user, pass, _ := e.tenantSetup()
	e.send(user, pass, []string{"pat@example.net", "sam@example.net"}, marketingMsg)
	copies := e.sink.Wait(t, 2, 20*time.Second)
	verp := map[string]string{}
	for _, c := range copies {
		verp[c.To[0]] = c.From
	}
	dsn := "From: MAILER-DAEMON@mx.example.net\r\nTo: " + verp["pat@example.net"] + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; pat@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--b--\r\n"
	arf := "From: fbl@mailbox.example\r\nTo: fbl@bounces.relay.test\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"f\"\r\n\r\n" +
		"--f\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n\r\n" +
		"--f\r\nContent-Type: text/rfc822-headers\r\n\r\nReturn-Path: <" + verp["sam@example.net"] + ">\r\nFrom: news@acme.test\r\nTo: sam@example.net\r\nSubject: Spring cleaning offer\r\n\r\n--f--\r\n"
	c, err := smtp.Dial(e.r.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	delayed := strings.NewReplacer("pat@example.net", "sam@example.net", "Action: failed", "Action: delayed",
		"Status: 5.1.1", "Status: 4.2.2", "550 5.1.1 no such user", "452 4.2.2 mailbox full").Replace(dsn)
	for rcpt, msg := range map[string]string{verp["pat@example.net"]: dsn, "fbl@bounces.relay.test": arf, verp["sam@example.net"]: delayed} {
		if err := c.SendMail("", []string{rcpt}, strings.NewReader(msg)); err != nil {
			t.Fatalf("to %s: %v", rcpt, err)
		}
	}
	// A report nobody can read is kept for the operator, not lost.
	if err := c.SendMail("", []string{"fbl@bounces.relay.test"}, strings.NewReader("Subject: ???\r\n\r\ngibberish\r\n")); err != nil {
		t.Fatal(err)
	}
	if kept, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, "reports", "unread", "*.eml")); len(kept) != 1 {
		t.Errorf("%d unreadable reports kept, want 1", len(kept))
	}
	// Both stop even transactional mail now.
	text := e.send(user, pass, []string{"pat@example.net", "sam@example.net"}, reminderMsg)
	if !strings.Contains(text, "2 of 2 recipients are suppressed") {
		t.Errorf("after the bounce and the complaint: %q", text)
	}
	var page struct {
		Suppressions []struct{ Address, List, Reason, Channel string }
	}
	e.api("GET", "/api/v1/tenants/acme/suppressions", nil, http.StatusOK, &page)
	got := map[string]string{}
	for _, s := range page.Suppressions {
		got[s.Address] = s.Reason + "/" + s.Channel + "/" + s.List
	}
	if got["pat@example.net"] != "bounce/dsn/*" || got["sam@example.net"] != "complaint/arf/*" || len(page.Suppressions) != 2 {
		t.Errorf("suppressions %v, want a bounce and a complaint only (the delay suppresses nothing)", got)
	}
	var evs struct {
		Events []struct {
			Type string
			Data struct{ Recipient, Channel, Reply string }
		}
	}
	e.api("GET", "/api/v1/tenants/acme/events?limit=1000", nil, http.StatusOK, &evs)
	deferred := false
	for _, ev := range evs.Events {
		deferred = deferred || ev.Type == "message.deferred" && ev.Data.Channel == "dsn" &&
			ev.Data.Recipient == "sam@example.net" && strings.HasPrefix(ev.Data.Reply, "4.2.2")
	}
	if !deferred {
		t.Error("no message.deferred event for the delayed report")
	}
}
