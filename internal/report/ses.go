package report

import (
	"encoding/json"
	"strings"
)

// Amazon SES delivers bounce and complaint notifications through SNS as a
// JSON document in a text/plain body, not as a DSN. The fields read here
// are those of the SES notification contents ("bounce", "complaint",
// "mail"); everything else is ignored.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	Bounce           struct {
		BounceType        string `json:"bounceType"`
		ReportingMTA      string `json:"reportingMTA"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint struct {
		FeedbackType         string `json:"complaintFeedbackType"`
		UserAgent            string `json:"userAgent"`
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
	} `json:"complaint"`
	Delivery struct {
		Recipients []string `json:"recipients"`
	} `json:"delivery"`
	Mail struct {
		MessageID string `json:"messageId"`
		Source    string `json:"source"`
	} `json:"mail"`
}

// parseSES fills b from an SES notification in text; it reports whether
// text was one.
func parseSES(text string, b *builder) bool {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "{") || !strings.Contains(text, `"notificationType"`) {
		return false
	}
	var n sesNotification
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&n); err != nil {
		// Relays that break long lines insert "!" and a folding newline
		// (Sendmail's 990-character limit); undo it once and retry.
		text = strings.NewReplacer("!\r\n ", "", "!\n ", "").Replace(text)
		if err := json.NewDecoder(strings.NewReader(text)).Decode(&n); err != nil {
			return false
		}
	}
	r := b.r
	switch n.NotificationType {
	case "Bounce":
		r.Kind = Bounce
		r.ReportingMTA = stripType(n.Bounce.ReportingMTA)
		for _, rc := range n.Bounce.BouncedRecipients {
			st := Status{
				Recipient:  extractAddr(rc.EmailAddress),
				Action:     strings.ToLower(rc.Action),
				Status:     enhancedCode(rc.Status),
				Diagnostic: clean(stripType(rc.DiagnosticCode)),
			}
			// SES says "Permanent" itself; still require a class 5 code.
			st.Permanent = n.Bounce.BounceType == "Permanent" && strings.HasPrefix(st.Status, "5.")
			b.add(st, "")
		}
	case "Delivery":
		// A delivery notification: recorded, nothing failed.
		r.Kind = Bounce
		for _, a := range n.Delivery.Recipients {
			b.add(Status{Recipient: extractAddr(a), Action: "delivered", Reason: Delivered}, "")
		}
	case "Complaint":
		r.FeedbackType = strings.ToLower(n.Complaint.FeedbackType)
		if r.FeedbackType == "" {
			// SES leaves the type out when the provider gave none; a
			// complaint through a feedback loop is a complaint.
			r.FeedbackType = "abuse"
		}
		r.UserAgent = n.Complaint.UserAgent
		var rcpts []string
		for _, c := range n.Complaint.ComplainedRecipients {
			if a := extractAddr(c.EmailAddress); a != "" && len(rcpts) < MaxParts {
				rcpts = append(rcpts, a)
			}
		}
		if len(rcpts) > 0 {
			r.OriginalRcptTo = rcpts[0]
		}
		r.OriginalMailFrom = extractAddr(n.Mail.Source)
		complaint(r.FeedbackType, rcpts, b)
	default:
		return false
	}
	r.Standard = true
	return true
}
