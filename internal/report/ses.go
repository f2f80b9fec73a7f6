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
	Mail struct {
		MessageID string `json:"messageId"`
		Source    string `json:"source"`
	} `json:"mail"`
}

// parseSES fills r from an SES notification in text; it reports whether
// text was one.
func parseSES(text string, r *Report) bool {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, "{") || !strings.Contains(text, `"notificationType"`) {
		return false
	}
	var n sesNotification
	if err := json.NewDecoder(strings.NewReader(text)).Decode(&n); err != nil {
		return false
	}
	switch n.NotificationType {
	case "Bounce":
		r.Kind = Bounce
		r.ReportingMTA = stripType(n.Bounce.ReportingMTA)
		for _, b := range n.Bounce.BouncedRecipients {
			st := Status{
				Recipient:  extractAddr(b.EmailAddress),
				Action:     strings.ToLower(b.Action),
				Status:     enhancedCode(b.Status),
				Diagnostic: stripType(b.DiagnosticCode),
			}
			// SES says "Permanent" itself; still require a class 5 code.
			st.Permanent = n.Bounce.BounceType == "Permanent" && strings.HasPrefix(st.Status, "5.")
			if st.Recipient != "" && len(r.Recipients) < MaxParts {
				r.Recipients = append(r.Recipients, st)
			}
		}
	case "Complaint":
		r.Kind = Complaint
		r.FeedbackType = strings.ToLower(n.Complaint.FeedbackType)
		if r.FeedbackType == "" {
			r.FeedbackType = "abuse"
		}
		r.UserAgent = n.Complaint.UserAgent
		if c := n.Complaint.ComplainedRecipients; len(c) > 0 {
			r.OriginalRcptTo = extractAddr(c[0].EmailAddress)
		}
		r.OriginalMailFrom = extractAddr(n.Mail.Source)
	default:
		return false
	}
	r.Standard = true
	return true
}
