package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// classifyFixtures are reports as an operator would save them: a hard
// bounce, a soft one whose Status field says 5.1.1 while its text says the
// mailbox is full, a DMARC failure report and a message that is no report.
var classifyFixtures = map[string]string{
	"hard.eml": dsnFixture("5.1.1", "550 5.1.1 <pat@example.net>: Recipient address rejected: User unknown"),
	"full.eml": dsnFixture("5.1.1", "552 5.1.1 <pat@example.net>: mailbox full, over quota"),
	"auth.eml": `From: dmarc@isp.example
Subject: auth failure
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="A"

--A
Content-Type: message/feedback-report

Feedback-Type: auth-failure
Version: 1
Original-Rcpt-To: <pat@example.net>
Auth-Failure: dmarc

--A--
`,
	"note.eml": "From: a@example.org\nSubject: hello\n\nJust a note.\n",
}

func dsnFixture(status, diag string) string {
	return `From: MAILER-DAEMON@mx.example.net
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; pat@example.net
Action: failed
Status: ` + status + `
Diagnostic-Code: smtp; ` + diag + `

--B--
`
}

// TestReportClassify: `heed report classify` prints one JSON object per
// file with the parsed report and what Heed would do; only the hard bounce
// suppresses; a file that cannot be read fails the command after the
// others are printed.
func TestReportClassify(t *testing.T) {
	dir := t.TempDir()
	args := []string{"report", "classify"}
	for _, name := range []string{"hard.eml", "full.eml", "auth.eml", "note.eml"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(classifyFixtures[name], "\n", "\r\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	type line struct {
		File   string `json:"file"`
		Report *struct {
			Kind       string `json:"kind"`
			Recipients []struct {
				Recipient, Status, Reason, Verdict string
			} `json:"recipients"`
		} `json:"report"`
		Error    string   `json:"error"`
		Suppress []string `json:"suppress"`
		Action   string   `json:"action"`
	}
	var got []line
	dec := json.NewDecoder(&out)
	for dec.More() {
		var l line
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	if len(got) != 4 {
		t.Fatalf("%d results, want 4: %+v", len(got), got)
	}
	hard, full, auth, note := got[0], got[1], got[2], got[3]
	if hard.Report == nil || hard.Report.Kind != "bounce" || len(hard.Report.Recipients) != 1 ||
		hard.Report.Recipients[0].Reason != "user-unknown" || hard.Report.Recipients[0].Verdict != "hard" ||
		strings.Join(hard.Suppress, ",") != "pat@example.net" || !strings.HasPrefix(hard.Action, "hard bounce") {
		t.Errorf("hard bounce: %+v", hard)
	}
	if full.Report == nil || full.Report.Recipients[0].Status != "5.1.1" || full.Report.Recipients[0].Reason != "mailbox-full" ||
		len(full.Suppress) != 0 || !strings.HasPrefix(full.Action, "soft bounce (mailbox-full)") {
		t.Errorf("full mailbox: %+v", full)
	}
	if auth.Report == nil || auth.Report.Kind != "feedback" || len(auth.Suppress) != 0 || !strings.Contains(auth.Action, "suppress nobody") {
		t.Errorf("auth-failure report: %+v", auth)
	}
	if note.Report != nil || note.Error == "" || len(note.Suppress) != 0 || !strings.Contains(note.Action, "reports/unread") {
		t.Errorf("not a report: %+v", note)
	}

	out.Reset()
	errb.Reset()
	missing := filepath.Join(dir, "missing.eml")
	if code := run([]string{"report", "classify", args[2], missing}, &out, &errb); code == 0 {
		t.Errorf("a missing file exits 0")
	}
	if n := strings.Count(out.String(), "\n"); n != 2 || !strings.Contains(errb.String(), "missing.eml") {
		t.Errorf("with a missing file: %d lines, stderr %q", n, errb.String())
	}
}
