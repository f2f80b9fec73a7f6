package report

import (
	"net/textproto"
	"strings"

	mtextproto "github.com/emersion/go-message/textproto"
)

// addFeedback copies the RFC 5965 section 3.1/3.2 fields a relay acts on.
func addFeedback(h *mtextproto.Header, r *Report) {
	r.Kind = Complaint
	r.Standard = true
	r.FeedbackType = strings.ToLower(firstWord(h.Get("Feedback-Type")))
	r.UserAgent = strings.TrimSpace(h.Get("User-Agent"))
	r.SourceIP = strings.TrimSpace(h.Get("Source-IP"))
	r.ReportedDomain = strings.ToLower(strings.TrimSpace(h.Get("Reported-Domain")))
	r.OriginalRcptTo = extractAddr(h.Get("Original-Rcpt-To"))
	r.OriginalMailFrom = extractAddr(h.Get("Original-Mail-From"))
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
func addJMRP(h *mtextproto.Header, r *Report) bool {
	rcpt := extractAddr(h.Get("X-Hmxmroriginalrecipient"))
	if rcpt == "" {
		return false
	}
	r.Kind = Complaint
	r.FeedbackType = "abuse"
	r.OriginalRcptTo = rcpt
	return true
}
