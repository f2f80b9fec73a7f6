package console_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/tenant"
)

// captureDir reads a capture directory as the relay's admin API does.
type captureDir string

func (d captureDir) List() ([]outbound.Captured, error) { return outbound.ListCaptured(string(d)) }
func (d captureDir) Open(id string) (io.ReadCloser, error) {
	return outbound.OpenCaptured(string(d), id)
}

// captured writes a copy of message id to recipient index of tenantID
// into dir as capture mode keeps it: the message, then its sidecar.
func captured(t *testing.T, dir, tenantID, id string, index int, to, msg string) {
	t.Helper()
	name := id + "-" + string(rune('0'+index))
	side, _ := json.Marshal(outbound.Captured{ID: name, MessageID: id, Recipient: index, From: "app@acme.example", To: to,
		Tenant: tenantID, List: "transactional", Size: int64(len(msg)), CapturedAt: time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(dir, name+".eml"), []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), side, 0o600); err != nil {
		t.Fatal(err)
	}
}

// reminder is a message with a subject in an encoded word, a text part,
// an HTML part with a script, a remote image and a form, and a PDF.
const reminder = "From: Acme Dental <app@acme.example>\r\n" +
	"To: maria.garcia@example.net\r\n" +
	"Subject: =?UTF-8?Q?Your_appointment_on_Tuesday_=E2=80=94_Acme?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=outer\r\n\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=alt\r\n\r\n" +
	"--alt\r\n" +
	"Content-Type: text/plain; charset=iso-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
	"Dear Mar=EDa, see you on Tuesday. <b>not bold</b>\r\n" +
	"--alt\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n\r\n" +
	"<p id=\"greeting\">Dear Mar\u00eda,</p><script>top.document.title = 'pwned'; document.write('ran')</script>" +
	"<img src=\"http://tracker.invalid/pixel.gif\"><form action=\"http://evil.invalid/\"><button>Go</button></form>\r\n" +
	"--alt--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"invoice.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\n" +
	"JVBERi0xLjQK\r\n" +
	"--outer--\r\n"

// captureEnv is a console in capture mode with acme's and globex's copies.
func captureEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	captured(t, dir, "acme", "m-acme", 0, "maria.garcia@example.net", reminder)
	captured(t, dir, "globex", "m-globex", 0, "secret.patient@example.net", "Subject: globex secret\r\n\r\nsecret body\r\n")
	return newEnv(t, func(o *console.Options) { o.Captures = captureDir(dir) })
}

// TestCapturedCopy: in capture mode a tenant's user reads the captured
// copy of a message to a recipient: the decoded header and text, every
// part escaped, the HTML part as its source;
// another tenant's copy answers exactly as one that does not exist, and
// out of capture mode there is none.
func TestCapturedCopy(t *testing.T) {
	e := captureEnv(t)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.message("acme", "m-acme", "maria.garcia@example.net")
	c := e.signedIn("pat")

	_, msgs, _ := e.get(c, "/console/tenants/acme/messages?q=m-acme")
	if !strings.Contains(msgs, `href="/console/tenants/acme/messages/m-acme/captured/0"`) {
		t.Errorf("the message's page has no link to its copy:\n%s", msgs)
	}
	st, body, _ := e.get(c, "/console/tenants/acme/messages/m-acme/captured/0")
	if st != 200 {
		t.Fatalf("the copy: %d\n%s", st, body)
	}
	for _, want := range []string{"Your appointment on Tuesday — Acme", "Dear María, see you on Tuesday. &lt;b&gt;not bold&lt;/b&gt;",
		"&lt;script&gt;top.document.title", "invoice.pdf", "application/pdf"} {
		if !strings.Contains(body, want) {
			t.Errorf("the copy lacks %q", want)
		}
	}
	for _, not := range []string{"<script>top", "<img src=\"http://tracker", "<b>not bold", "<form action=\"http://evil"} {
		if strings.Contains(body, not) {
			t.Errorf("the copy has %q live in the page:\n%s", not, body)
		}
	}

	stOther, other, _ := e.get(c, "/console/tenants/acme/messages/m-globex/captured/0")
	stNone, none, _ := e.get(c, "/console/tenants/acme/messages/nothing/captured/0")
	if stOther != 404 || stNone != 404 || other != none || strings.Contains(other, "secret") {
		t.Errorf("another tenant's copy: %d, a missing one: %d; want the same 404\n%s", stOther, stNone, other)
	}
	if st, _, _ := e.get(c, "/console/tenants/globex/messages/m-globex/captured/0"); st != 404 {
		t.Errorf("another tenant's copy by its own tenant's path: %d", st)
	}

	off := newEnv(t, nil)
	off.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	oc := off.signedIn("pat")
	if st, _, _ := off.get(oc, "/console/tenants/acme/messages/m-acme/captured/0"); st != 404 {
		t.Errorf("a copy out of capture mode: %d", st)
	}
}

// TestBrowserCapturedCopy: in Chromium the copy's HTML part is its
// source, as text: its script does not run, and the page passes axe.
func TestBrowserCapturedCopy(t *testing.T) {
	e := captureEnv(t)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.message("acme", "m-acme", "maria.garcia@example.net")
	b := newBrowser(t, true)
	b.signIn(e, "pat")
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/messages?q=m-acme"),
		chromedp.Click(chromedp.CSS(`a[href="/console/tenants/acme/messages/m-acme/captured/0"]`)),
		chromedp.WaitVisible(chromedp.CSS("pre.mail")))
	title, main := b.page()
	if strings.Contains(title, "pwned") || !strings.Contains(main, "Dear María, see you on Tuesday.") ||
		!strings.Contains(main, "<script>top.document.title") {
		t.Errorf("the copy's page: %q\n%s", title, main)
	}
	b.accessible("captured copy")
	b.shot("captured")
}
