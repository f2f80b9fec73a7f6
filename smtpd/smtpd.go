// Package smtpd holds Heed's SMTP listeners.
//
// Submission (this file's Submission) is where SaaS apps hand Heed their
// mail: ESMTP (RFC 5321) with STARTTLS (RFC 3207) or implicit TLS (RFC
// 8314), AUTH PLAIN (RFC 4616) and LOGIN (RFC 4954), enhanced status codes
// (RFC 3463), SIZE (RFC 1870), PIPELINING (RFC 2920) and CHUNKING (RFC
// 3030), all spoken by go-smtp. This package adds the policy: who may send,
// for which domains and lists, within which limits, and it spools accepted
// mail durably before the 250.
//
// Every refusal is an SMTP reply with an enhanced status code and a
// sentence the app's developer can act on. Internal failures answer 451
// with a reference that is also in the log; nothing already accepted is
// lost by one.
package smtpd

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/txn"
	"time"
)

func reply(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// internalError logs err with a reference and returns the 451 the client
// sees: temporary, so the app retries and nothing is lost.
func internalError(log *slog.Logger, what string, err error) *smtp.SMTPError {
	ref := ids.New(time.Now())[10:]
	log.Error("smtp: "+what, "ref", ref, "err", err)
	if errors.Is(err, txn.ErrUnavailable) {
		// Nothing was committed: the client keeps the message and retries.
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "Heed's database is unavailable; nothing was accepted, please try again later (ref %s)", ref)
	}
	return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem, please try again later (ref %s)", ref)
}
