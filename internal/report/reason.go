package report

import (
	"fmt"
	"strings"
)

// Reason says why a delivery failed, as far as the evidence in a report
// (or an SMTP reply) tells. The reason, not the status code alone, decides
// whether an address is suppressed: see Reason.Hard.
type Reason string

// The reasons Heed tells apart. Only the first four are hard: they say the
// address itself cannot receive mail. Every other failure is about this
// message, the sender, the network or a state of the mailbox that may
// pass, and suppressing on one such report would stop mail to a person
// who can still receive it.
const (
	// UserUnknown: the mailbox does not exist (RFC 3463 X.1.1, X.1.3).
	UserUnknown Reason = "user-unknown"
	// HostUnknown: the domain does not exist or has no mail host
	// (X.1.2, and X.4.4 when the text says the name is not found).
	HostUnknown Reason = "host-unknown"
	// HasMoved: the mailbox has moved and mail is not forwarded (X.1.6,
	// RFC 5321 section 3.4 reply 551).
	HasMoved Reason = "has-moved"
	// NotAccept: the domain says it accepts no mail at all (a null MX,
	// RFC 7505, X.1.10).
	NotAccept Reason = "not-accept"

	// MailboxFull: over quota (X.2.2) or out of disk space.
	MailboxFull Reason = "mailbox-full"
	// Suspended: the mailbox exists but is disabled, inactive, locked or
	// frozen (X.2.1: "this may be a permanent error ... or a transient
	// error if the mailbox is only temporarily disabled").
	Suspended Reason = "suspended"
	// Filtered: the recipient's system or preferences refused this
	// message, including "user unknown" answered to DATA rather than to
	// RCPT TO (RFC 5321 section 3.3: a recipient is accepted or refused at
	// RCPT; a refusal after DATA is about the message).
	Filtered Reason = "filtered"
	// Blocked: the sending IP or host is blocked (block lists, reputation,
	// missing reverse DNS).
	Blocked Reason = "blocked"
	// Policy: refused by the receiving site's policy (X.7.1 and kin).
	Policy Reason = "policy"
	// SpamDetected: the message was taken for spam.
	SpamDetected Reason = "spam-detected"
	// VirusDetected: the message was taken to carry malware.
	VirusDetected Reason = "virus-detected"
	// RateLimited: too many messages, recipients or connections.
	RateLimited Reason = "rate-limited"
	// Expired: the reporting system gave up retrying (X.4.7).
	Expired Reason = "expired"
	// TooBig: the message exceeds a size limit (X.2.3, X.3.4).
	TooBig Reason = "message-too-big"
	// RelayDenied: the host is not a relay for the recipient's domain.
	RelayDenied Reason = "relay-denied"
	// AuthFailure: SPF, DKIM or DMARC checks failed (X.7.23-X.7.27 and
	// the like; RFC 7372).
	AuthFailure Reason = "auth-failure"
	// SenderRejected: the envelope sender was refused (X.1.7, X.1.8).
	SenderRejected Reason = "sender-rejected"
	// ContentError: the message's headers or content were refused (X.6.x).
	ContentError Reason = "content-error"
	// NetworkError: the next hop could not be reached (X.4.x).
	NetworkError Reason = "network-error"
	// SystemError: the receiving system failed (X.3.x).
	SystemError Reason = "system-error"
	// ProtocolError: the SMTP dialogue went wrong (X.5.x).
	ProtocolError Reason = "protocol-error"
	// Undetermined: a failure whose evidence names no reason.
	Undetermined Reason = "undetermined"

	// Delivered: a DSN that reports delivery (action delivered, relayed
	// or expanded); nothing failed.
	Delivered Reason = "delivered"
	// Vacation: an RFC 3834 auto-reply.
	Vacation Reason = "auto-reply"
	// Complaint: an ARF report of type abuse, fraud, other or opt-out,
	// or a provider's equivalent: the recipient complained.
	ComplaintReason Reason = "complaint"
	// FeedbackOnly: an ARF report that is not the recipient's complaint
	// (auth-failure, not-spam, virus; RFC 5965, RFC 6591, RFC 6430).
	FeedbackOnly Reason = "feedback"
)

// Hard reports whether r says the address itself is gone, so that a
// permanent failure for this reason should suppress it.
func (r Reason) Hard() bool {
	switch r {
	case UserUnknown, HostUnknown, HasMoved, NotAccept:
		return true
	}
	return false
}

// Verdict is what Heed does about one recipient of a report.
type Verdict int

const (
	// NotActionable: nothing to do beyond recording it (deliveries,
	// auto-replies, feedback that is not a complaint).
	NotActionable Verdict = iota
	// Soft: delivery failed or is delayed, but the address may work
	// again; one such report suppresses nobody.
	Soft
	// Hard: the address is gone; suppress it.
	Hard
	// Complained: the recipient complained; suppress it.
	Complained
)

var verdictNames = [...]string{"none", "soft", "hard", "complaint"}

func (v Verdict) String() string {
	if v < 0 || int(v) >= len(verdictNames) {
		return fmt.Sprintf("Verdict(%d)", int(v))
	}
	return verdictNames[v]
}

// Suppress reports whether the verdict suppresses the address.
func (v Verdict) Suppress() bool { return v == Hard || v == Complained }

// MarshalText makes Verdict readable in JSON.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (v *Verdict) UnmarshalText(b []byte) error {
	for i, n := range verdictNames {
		if n == string(b) {
			*v = Verdict(i)
			return nil
		}
	}
	return fmt.Errorf("report: unknown verdict %q", b)
}

// Classify decides the reason for a failed delivery from an SMTP reply:
// its code (RFC 5321 section 4.2; 0 if none), its enhanced status code
// (RFC 3463; "" if none) and its text. The queue can use it for replies
// received while delivering; reports use the same rules with more
// evidence (see classify).
func Classify(code int, enhanced, text string) Reason {
	return classify(evidence{code: code, status: enhanced, text: text})
}

// Judge gives the verdict for a failure with reason r whose status class
// is class ('4', '5', or 0 when the reply carried no code).
func Judge(r Reason, class byte) Verdict {
	switch r {
	case Delivered, Vacation, FeedbackOnly:
		return NotActionable
	case ComplaintReason:
		return Complained
	}
	if r.Hard() && class != '4' {
		return Hard
	}
	return Soft
}

// classOf returns the class digit of the first code present, in order of
// trust: the enhanced status, then the SMTP reply code.
func classOf(status string, code int) byte {
	if status != "" && strings.ContainsRune("245", rune(status[0])) {
		return status[0]
	}
	if code >= 200 && code < 600 {
		return byte('0' + code/100)
	}
	return 0
}
