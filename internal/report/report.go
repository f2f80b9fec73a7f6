package report

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Limits on what Parse accepts. Reports are small; anything bigger is either
// not a report or an attempt to make the relay work hard.
const (
	// MaxSize is the largest message, in bytes, that Parse reads.
	MaxSize = 10 << 20
	// MaxParts is the largest number of MIME parts Parse walks.
	MaxParts = 100
	// maxDepth bounds multipart nesting.
	maxDepth = 8
	// maxText bounds the human-readable text kept for the heuristic.
	maxText = 256 << 10
)

// ErrUnparsable is wrapped by every error meaning "cannot tell what this
// message is"; callers may still want to keep the message for a human.
var ErrUnparsable = errors.New("report: unparsable")

// ErrTooLarge is returned (wrapping ErrUnparsable) when a message exceeds
// MaxSize or MaxParts.
var ErrTooLarge = fmt.Errorf("%w: message too large or too complex", ErrUnparsable)

// Kind says what a report is about.
type Kind int

const (
	// Unknown is the zero Kind; Parse never returns it with a nil error:
	// what it cannot classify is an error wrapping ErrUnparsable.
	Unknown Kind = iota
	// Bounce is a delivery status notification: failed, delayed or other.
	Bounce
	// Complaint is an abuse feedback report (ARF).
	Complaint
	// AutoReply is an RFC 3834 auto-reply ("out of office"); it must never
	// suppress anyone.
	AutoReply
	// Feedback is an ARF report that is not the recipient's complaint:
	// auth-failure (RFC 6591), not-spam (RFC 6430) or virus (RFC 5965
	// section 7.3). It is recorded for the operator and suppresses nobody.
	Feedback
)

var kindNames = [...]string{"unknown", "bounce", "complaint", "auto-reply", "feedback"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// MarshalText makes Kind readable in JSON.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (k *Kind) UnmarshalText(b []byte) error {
	for i, n := range kindNames {
		if n == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("report: unknown kind %q", b)
}

// Report is what Parse learned from one inbound message.
type Report struct {
	Kind Kind `json:"kind"`
	// Standard is true when the facts came from a machine-readable part
	// (message/delivery-status or message/feedback-report), false when they
	// came from the heuristic over human-readable text.
	Standard bool `json:"standard"`
	// ReportingMTA is the DSN's Reporting-MTA, without its "dns;" type.
	ReportingMTA string `json:"reporting_mta,omitempty"`
	// Recipients has one entry per recipient the report is about: each
	// recipient of a bounce, each complainant of a complaint.
	Recipients []Status `json:"recipients,omitempty"`

	// The fields below are set for complaints (RFC 5965 section 3.1/3.2).
	FeedbackType     string `json:"feedback_type,omitempty"`
	UserAgent        string `json:"user_agent,omitempty"`
	SourceIP         string `json:"source_ip,omitempty"`
	ReportedDomain   string `json:"reported_domain,omitempty"`
	OriginalRcptTo   string `json:"original_rcpt_to,omitempty"`
	OriginalMailFrom string `json:"original_mail_from,omitempty"`

	// Original holds headers of the message the report is about, when the
	// report included it (message/rfc822 or text/rfc822-headers).
	Original *Original `json:"original,omitempty"`
}

// Suppressed returns the addresses this report alone suppresses: the
// recipients whose Verdict is Hard or Complained.
func (r *Report) Suppressed() []string {
	var out []string
	for _, s := range r.Recipients {
		if s.Verdict.Suppress() {
			out = append(out, s.Recipient)
		}
	}
	return out
}

// Complainant returns the address that complained: Original-Rcpt-To when
// the report gives it, else the original message's To when it names exactly
// one address, else "".
func (r *Report) Complainant() string {
	if r.OriginalRcptTo != "" {
		return r.OriginalRcptTo
	}
	if r.Original != nil && r.Original.To != "" && !strings.Contains(r.Original.To, ",") {
		return extractAddr(r.Original.To)
	}
	return ""
}

// Status is the outcome for one recipient.
type Status struct {
	// Recipient is the bare address (Final-Recipient, else
	// Original-Recipient, without the "rfc822;" type).
	Recipient string `json:"recipient"`
	// Action is the RFC 3464 action, lower case: failed, delayed,
	// delivered, relayed or expanded. Empty when the report gave none.
	Action string `json:"action,omitempty"`
	// Status is the RFC 3463 enhanced code, e.g. "5.1.1"; for heuristic
	// results it may be derived from an SMTP reply code ("550" -> "5.0.0").
	Status string `json:"status,omitempty"`
	// Permanent is true when delivery of this message failed for good:
	// Action "failed" with a class-5 status, or, for non-standard bounces,
	// a class-5 code found in the text beside the recipient. It says
	// nothing about the address; Verdict does.
	Permanent bool `json:"permanent"`
	// Reason is why delivery failed, decided from all the evidence (see
	// classify.go); for complaints ComplaintReason or FeedbackOnly.
	Reason Reason `json:"reason,omitempty"`
	// Verdict is what the report means for this address: Hard or
	// Complained suppress it.
	Verdict Verdict `json:"verdict"`
	// Diagnostic is the remote server's reply, without its "smtp;" type.
	Diagnostic string `json:"diagnostic,omitempty"`
	// RemoteMTA is the server that gave the reply, without "dns;".
	RemoteMTA string `json:"remote_mta,omitempty"`
}

// Original is the part of the original message a report quotes.
type Original struct {
	MessageID       string `json:"message_id,omitempty"`
	From            string `json:"from,omitempty"`
	To              string `json:"to,omitempty"`
	Subject         string `json:"subject,omitempty"`
	ReturnPath      string `json:"return_path,omitempty"`
	ListUnsubscribe string `json:"list_unsubscribe,omitempty"`
	// Extra holds the first value of every X- field, keyed by canonical
	// name; Heed puts its own correlation ids there.
	Extra map[string]string `json:"extra,omitempty"`
}

// Parse reads one inbound message and says what it reports. It never
// panics; errors wrap ErrUnparsable.
func Parse(msg []byte) (*Report, error) {
	if len(msg) > MaxSize {
		return nil, ErrTooLarge
	}
	s, err := scan(bytes.NewReader(refoldBoundary(skipMboxLine(msg))))
	if err != nil {
		return nil, err
	}
	return s.build()
}

// unfoldedBoundary finds a boundary parameter written on a line of its own
// without folding whitespace after a Content-Type ending in ";", as Office
// 365 writes inside its reports. Unrepaired, it is a malformed header line
// that ends the MIME walk before the delivery-status part.
var unfoldedBoundary = regexp.MustCompile(`(?i)(;[ \t]*\r?\n)(boundary=)`)

// refoldBoundary folds such a line back into its field (RFC 5322 section
// 2.2.3).
func refoldBoundary(msg []byte) []byte {
	return unfoldedBoundary.ReplaceAll(msg, []byte("$1\t$2"))
}

// skipMboxLine drops an mbox "From " envelope line, which saved bounces
// often start with and which is not a header field.
func skipMboxLine(msg []byte) []byte {
	if !bytes.HasPrefix(msg, []byte("From ")) {
		return msg
	}
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		return msg[i+1:]
	}
	return nil
}
