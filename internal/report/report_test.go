package report

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// crlf turns a readable fixture into wire format.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func dsn(action, status, diag string) []byte {
	return crlf(`From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces@heed.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0000

Final-Recipient: rfc822; Alice@Example.ORG
Original-Recipient: rfc822;alice@example.org
Action: ` + action + `
Status: ` + status + `
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; ` + diag + `

--B
Content-Type: text/rfc822-headers

From: shop@tenant.example
To: alice@example.org
Message-ID: <m1@heed.example>
X-Heed-Id: 42

--B--
`)
}

func TestDSN(t *testing.T) {
	tests := []struct {
		name, action, status, diag string
		permanent                  bool
		reason                     Reason
		verdict                    Verdict
	}{
		{"permanent 5.1.1", "failed", "5.1.1", "550 5.1.1 <alice@example.org>: user unknown", true, UserUnknown, Hard},
		{"transient 4.2.2", "failed", "4.2.2", "452 4.2.2 mailbox full", false, MailboxFull, Soft},
		{"delayed", "delayed", "4.4.1", "421 4.4.1 connection timed out", false, NetworkError, Soft},
		{"failed but class 4 in text", "Failed", "4.0.0 (temporary)", "451 try later", false, Undetermined, Soft},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(dsn(tt.action, tt.status, tt.diag))
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != Bounce || !r.Standard || r.ReportingMTA != "mx.example.net" {
				t.Fatalf("got %+v", r)
			}
			if len(r.Recipients) != 1 {
				t.Fatalf("recipients: %+v", r.Recipients)
			}
			s := r.Recipients[0]
			want := Status{
				Recipient:  "Alice@example.org",
				Action:     strings.ToLower(tt.action),
				Status:     strings.Fields(tt.status)[0],
				Permanent:  tt.permanent,
				Reason:     tt.reason,
				Verdict:    tt.verdict,
				Diagnostic: tt.diag,
				RemoteMTA:  "mx.example.org",
			}
			if s != want {
				t.Errorf("got  %+v\nwant %+v", s, want)
			}
			if r.Original == nil || r.Original.MessageID != "<m1@heed.example>" || r.Original.Extra["X-Heed-Id"] != "42" {
				t.Errorf("original: %+v", r.Original)
			}
		})
	}
}

const arfReport = `From: feedback@isp.example
To: fbl@heed.example
Subject: FW: Sale
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="A"

--A
Content-Type: text/plain

This is an email abuse report.

--A
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounce+x@heed.example>
Original-Rcpt-To: <bob@isp.example>
Source-IP: 192.0.2.1
Reported-Domain: Tenant.Example

--A
Content-Type: %s

From: Shop <shop@tenant.example>
To: bob@isp.example
Subject: Sale
Message-ID: <m2@heed.example>
List-Unsubscribe: <https://heed.example/u/tok>, <mailto:u+tok@heed.example>
X-Heed-Id: 7

Buy now.

--A--
`

func TestARF(t *testing.T) {
	for _, ct := range []string{"message/rfc822", "text/rfc822-headers"} {
		t.Run(ct, func(t *testing.T) {
			r, err := Parse(crlf(strings.Replace(arfReport, "%s", ct, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != Complaint || r.FeedbackType != "abuse" || r.ReportedDomain != "tenant.example" ||
				r.SourceIP != "192.0.2.1" || r.UserAgent != "SomeGenerator/1.0" {
				t.Errorf("report: %+v", r)
			}
			if r.OriginalRcptTo != "bob@isp.example" || r.OriginalMailFrom != "bounce+x@heed.example" {
				t.Errorf("envelope: %q %q", r.OriginalRcptTo, r.OriginalMailFrom)
			}
			if r.Complainant() != "bob@isp.example" {
				t.Errorf("complainant %q", r.Complainant())
			}
			o := r.Original
			if o == nil || o.MessageID != "<m2@heed.example>" || o.To != "bob@isp.example" ||
				!strings.HasPrefix(o.ListUnsubscribe, "<https://heed.example/u/tok>") || o.Extra["X-Heed-Id"] != "7" {
				t.Errorf("original: %+v", o)
			}
			want := []Status{{Recipient: "bob@isp.example", Reason: ComplaintReason, Verdict: Complained}}
			if fmt.Sprint(r.Recipients) != fmt.Sprint(want) {
				t.Errorf("recipients %+v, want %+v", r.Recipients, want)
			}
		})
	}
}

func TestHeuristicQmail(t *testing.T) {
	msg := crlf(`From: MAILER-DAEMON@mx.example.net
To: bounces@heed.example
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.

<carol@example.org>:
192.0.2.9 does not like recipient.
Remote host said: 550 5.1.1 <carol@example.org>... User unknown

--- Below this line is a copy of the message.

Received: (qmail 1 invoked by uid 8.14.4); 23 Nov 2026
`)
	r, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := Status{Recipient: "carol@example.org", Action: "failed", Status: "5.1.1", Permanent: true,
		Reason: UserUnknown, Verdict: Hard, Diagnostic: "Remote host said: 550 5.1.1 <carol@example.org>... User unknown"}
	if r.Kind != Bounce || r.Standard || len(r.Recipients) != 1 || r.Recipients[0] != want {
		t.Errorf("got %+v", r)
	}
}

func TestNotAReport(t *testing.T) {
	for name, msg := range map[string][]byte{
		"plain mail": crlf("From: a@example.org\nSubject: hello\n\nhi 550 5.1.1\n"),
		"garbage":    []byte("\x00\x01\x02"),
		"empty":      nil,
	} {
		_, err := Parse(msg)
		if !errors.Is(err, ErrUnparsable) {
			t.Errorf("%s: err %v, want ErrUnparsable", name, err)
		}
	}
}

func TestAutoReplyIsNotBounce(t *testing.T) {
	r, err := Parse(crlf("From: a@example.org\nAuto-Submitted: auto-replied\nSubject: Away\n\nBack on Monday.\n"))
	if err != nil || r.Kind != AutoReply {
		t.Fatalf("got %+v, %v", r, err)
	}
}

func TestLimits(t *testing.T) {
	big := make([]byte, MaxSize+1)
	if _, err := Parse(big); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrUnparsable) {
		t.Errorf("oversized: %v", err)
	}
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=Z\r\n\r\n")
	for range MaxParts + 5 {
		b.WriteString("--Z\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	b.WriteString("--Z--\r\n")
	if _, err := Parse([]byte(b.String())); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too many parts: %v", err)
	}
}

func TestEnhancedCode(t *testing.T) {
	for in, want := range map[string]string{
		"5.1.1":                     "5.1.1",
		"smtp; 550 5.7.1 denied":    "5.7.1",
		"Sendmail 8.14.4/8.14.4":    "",
		"192.0.2.5":                 "",
		"DSN 5.1.10 Errors.":        "5.1.10",
		"(#4.4.1)":                  "4.4.1",
		"version 1.2.3 then 4.2.2.": "4.2.2",
	} {
		if got := enhancedCode(in); got != want {
			t.Errorf("enhancedCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKindText(t *testing.T) {
	for k := Unknown; k <= Feedback; k++ {
		b, _ := k.MarshalText()
		var back Kind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("%v round-trips to %v, %v", k, back, err)
		}
	}
}

func TestHeuristicCodePerRecipient(t *testing.T) {
	msg := crlf(`From: MAILER-DAEMON@mx.example.net
Subject: failure notice

<full@example.org>:
Remote host said: 552 5.2.2 mailbox full
<gone@example.org>:
Remote host said: 550 5.1.1 user unknown, full@example.org is not me
<later@example.org>:
Remote host said: 451 4.3.0 try later
`)
	r, err := Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range r.Recipients {
		got[s.Recipient] = fmt.Sprintf("%s %s %v %s %s", s.Status, s.Action, s.Permanent, s.Reason, s.Verdict)
	}
	want := map[string]string{
		"full@example.org":  "5.2.2 failed true mailbox-full soft",
		"gone@example.org":  "5.1.1 failed true user-unknown hard",
		"later@example.org": "4.3.0 delayed false system-error soft",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}
