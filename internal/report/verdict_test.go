package report

import (
	"fmt"
	"strings"
	"testing"
)

// TestFeedbackTypes: only the recipient's own complaint suppresses (RFC
// 5965 abuse, fraud, other; opt-out); an auth-failure report (RFC 6591),
// not-spam (RFC 6430), virus or an unregistered type is kept for the
// operator and suppresses nobody.
func TestFeedbackTypes(t *testing.T) {
	for typ, want := range map[string]Kind{
		"abuse": Complaint, "fraud": Complaint, "other": Complaint, "opt-out": Complaint,
		"auth-failure": Feedback, "not-spam": Feedback, "virus": Feedback, "x-unheard-of": Feedback,
	} {
		t.Run(typ, func(t *testing.T) {
			msg := strings.Replace(arfReport, "Feedback-Type: abuse", "Feedback-Type: "+typ, 1)
			r, err := Parse(crlf(strings.Replace(msg, "%s", "message/rfc822", 1)))
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != want || r.FeedbackType != typ {
				t.Errorf("kind %v type %q, want %v", r.Kind, r.FeedbackType, want)
			}
			got := fmt.Sprint(r.Suppressed())
			if wantSupp := map[bool]string{true: "[bob@isp.example]", false: "[]"}[want == Complaint]; got != wantSupp {
				t.Errorf("suppressed %s, want %s", got, wantSupp)
			}
		})
	}
}

// TestComplaintEveryRecipient: a report naming several complainants
// (Original-Rcpt-To once per recipient, RFC 5965 section 3.2) suppresses
// each of them.
func TestComplaintEveryRecipient(t *testing.T) {
	msg := strings.Replace(arfReport, "Original-Rcpt-To: <bob@isp.example>",
		"Original-Rcpt-To: <bob@isp.example>\nOriginal-Rcpt-To: Carol@ISP.example", 1)
	r, err := Parse(crlf(strings.Replace(msg, "%s", "message/rfc822", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.Suppressed()); got != "[bob@isp.example Carol@isp.example]" {
		t.Errorf("suppressed %s", got)
	}
}

// TestVerdictByEvidence: the status field alone does not decide; the text
// beside it does, and only a final failure of a hard reason suppresses.
func TestVerdictByEvidence(t *testing.T) {
	tests := []struct {
		name, action, status, diag string
		reason                     Reason
		verdict                    Verdict
	}{
		{"5.1.1 user unknown", "failed", "5.1.1", "550 5.1.1 <alice@example.org>: user unknown", UserUnknown, Hard},
		{"5.2.1 alone is a disabled mailbox", "failed", "5.2.1", "550 5.2.1 The email account that you tried to reach is disabled", Suspended, Soft},
		{"5.2.1 with user unknown", "failed", "5.2.1", "550 5.2.1 <alice@example.org>... User Unknown", UserUnknown, Hard},
		{"5.1.1 but over quota", "failed", "5.1.1", "550 5.1.1 <alice@example.org>: mailbox full", MailboxFull, Soft},
		{"5.1.1 but IP blocked", "failed", "5.1.1", "550 5.7.1 IP address blacklisted by recipient", Blocked, Soft},
		{"5.1.1 but rate limit", "failed", "5.1.1", "550 5.1.1 <alice@example.org> - 203.0.113.1 has sent to too many recipients this hour", RateLimited, Soft},
		{"5.0.0 with a 5.1.1 inside", "failed", "5.0.0", "550 5.1.1 <alice@example.org>... User Unknown", UserUnknown, Hard},
		{"5.4.4 name not found", "failed", "5.4.4", "Host or domain name not found. Name service error", HostUnknown, Hard},
		{"5.5.0 domain not reachable", "failed", "5.5.0", "554 The mail could not be delivered to the recipient because the domain is not reachable", HostUnknown, Hard},
		{"5.7.1 not authorized", "failed", "5.7.1", "551 5.7.1 Delivery not authorized", Policy, Soft},
		{"5.7.27 null MX", "failed", "5.7.27", "550 Host does not accept mail", NotAccept, Hard},
		{"class 4 user unknown", "failed", "4.1.1", "450 4.1.1 <alice@example.org>: Recipient address rejected: User unknown", UserUnknown, Soft},
		{"delayed host unknown", "delayed", "5.1.2", "550 5.1.2 host unknown", HostUnknown, Soft},
		{"user unknown to DATA", "failed", "5.0.0", "550 5.0.0 <alice@example.org>... User unknown (in reply to end of DATA command)", Filtered, Soft},
		{"bare user unknown", "failed", "5.0.0", "550 <alice@example.org>: User unknown", Undetermined, Soft},
		{"a link is no evidence", "failed", "5.1.1", "550 5.1.1 no such user, see https://example.net/help#spam", UserUnknown, Hard},
		{"delivered", "delivered", "2.0.0", "250 ok", Delivered, NotActionable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(dsn(tt.action, tt.status, tt.diag))
			if err != nil {
				t.Fatal(err)
			}
			s := r.Recipients[0]
			if s.Reason != tt.reason || s.Verdict != tt.verdict {
				t.Errorf("%s/%s, want %s/%s", s.Reason, s.Verdict, tt.reason, tt.verdict)
			}
		})
	}
}

// TestClassifyReply is the entry point the queue can use for a reply
// received while delivering.
func TestClassifyReply(t *testing.T) {
	for _, tt := range []struct {
		code     int
		enhanced string
		text     string
		want     Reason
	}{
		{550, "5.1.1", "no such user", UserUnknown},
		{552, "5.2.2", "mailbox full", MailboxFull},
		{550, "5.2.1", "account disabled", Suspended},
		{421, "4.7.0", "try again later", Policy},
		{550, "", "rejected", Undetermined},
	} {
		if got := Classify(tt.code, tt.enhanced, tt.text); got != tt.want {
			t.Errorf("Classify(%d, %q, %q) = %s, want %s", tt.code, tt.enhanced, tt.text, got, tt.want)
		}
	}
	if Judge(UserUnknown, '4') != Soft || Judge(UserUnknown, '5') != Hard || Judge(MailboxFull, '5') != Soft {
		t.Error("Judge: a hard reason suppresses only in a permanent failure")
	}
}

func TestVerdictText(t *testing.T) {
	for v := NotActionable; v <= Complained; v++ {
		b, _ := v.MarshalText()
		var back Verdict
		if err := back.UnmarshalText(b); err != nil || back != v {
			t.Errorf("%v round-trips to %v, %v", v, back, err)
		}
	}
}
