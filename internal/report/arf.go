package report

import (
	"net/textproto"
	"strings"

	mtextproto "github.com/emersion/go-message/textproto"
)

// addFeedback copies the RFC 5965 section 3.1/3.2 fields a relay acts on,
// and names each complainant a recipient of the report.
func addFeedback(h *mtextproto.Header, b *builder) {
	r := b.r
	r.Standard = true
	r.FeedbackType = strings.ToLower(firstWord(h.Get("Feedback-Type")))
	r.UserAgent = strings.TrimSpace(h.Get("User-Agent"))
	r.SourceIP = strings.TrimSpace(h.Get("Source-IP"))
	r.ReportedDomain = strings.ToLower(strings.TrimSpace(h.Get("Reported-Domain")))
	r.OriginalMailFrom = extractAddr(h.Get("Original-Mail-From"))
	// RFC 5965 section 3.2: Original-Rcpt-To may appear once per
	// recipient the report is about.
	var rcpts []string
	for _, v := range h.Values("Original-Rcpt-To") {
		if a := extractAddr(v); a != "" {
			rcpts = append(rcpts, a)
		}
	}
	if len(rcpts) > 0 {
		r.OriginalRcptTo = rcpts[0]
	}
	complaint(r.FeedbackType, rcpts, b)
}

// complaint sets the kind of a feedback report and its recipients. Only
// the recipient's own complaint suppresses: "abuse", "fraud" and "other"
// (RFC 5965 section 7.3) and "opt-out"; "auth-failure" (RFC 6591) is
// about the sender's authentication, "not-spam" (RFC 6430) is the opposite
// of a complaint and "virus" is about the content. A type no RFC
// registers is kept for the operator and suppresses nobody.
func complaint(feedbackType string, rcpts []string, b *builder) {
	r := b.r
	reason, verdict := FeedbackOnly, NotActionable
	r.Kind = Feedback
	switch feedbackType {
	case "abuse", "fraud", "other", "opt-out":
		reason, verdict = ComplaintReason, Complained
		r.Kind = Complaint
	}
	if len(rcpts) == 0 {
		if c := r.Complainant(); c != "" {
			rcpts = []string{c}
		}
	}
	for _, a := range rcpts {
		b.add(Status{Recipient: a, Reason: reason, Verdict: verdict}, "")
	}
}

// originalFrom copies the headers of the quoted original message.
func originalFrom(h *mtextproto.Header) *Original {
	o := &Original{
		MessageID:       strings.TrimSpace(h.Get("Message-Id")),
		From:            strings.TrimSpace(h.Get("From")),
		To:              strings.TrimSpace(h.Get("To")),
		Subject:         strings.TrimSpace(h.Get("Subject")),
		ReturnPath:      strings.TrimSpace(h.Get("Return-Path")),
		ListUnsubscribe: strings.TrimSpace(h.Get("List-Unsubscribe")),
	}
	fields := h.Fields()
	for fields.Next() {
		k := textproto.CanonicalMIMEHeaderKey(fields.Key())
		if !strings.HasPrefix(k, "X-") {
			continue
		}
		if o.Extra == nil {
			o.Extra = map[string]string{}
		}
		if _, ok := o.Extra[k]; !ok && len(o.Extra) < 64 {
			o.Extra[k] = strings.TrimSpace(fields.Value())
		}
	}
	if o.MessageID == "" && o.From == "" && o.To == "" && o.ReturnPath == "" && len(o.Extra) == 0 {
		return nil
	}
	return o
}

// addJMRP recognises Microsoft's Junk Mail Reporting Program reports, which
// are not ARF: a plain message/rfc822 attachment whose headers carry
// X-HmXmrOriginalRecipient, the complaining address. It reports whether h
// was one.
func addJMRP(h *mtextproto.Header, b *builder) bool {
	rcpt := extractAddr(h.Get("X-Hmxmroriginalrecipient"))
	if rcpt == "" {
		return false
	}
	b.r.FeedbackType = "abuse"
	b.r.OriginalRcptTo = rcpt
	complaint("abuse", []string{rcpt}, b)
	return true
}
