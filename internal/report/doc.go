// Package report parses the reports that mailbox providers send back to a
// relay: delivery status notifications (bounces) and abuse feedback
// (complaints), so that Heed can suppress hard-bounced and complaining
// addresses (see compliance.md: "Hard bounces and complaints stop both
// kinds").
//
// Standards implemented:
//   - RFC 6522: the multipart/report container.
//   - RFC 3464: message/delivery-status, a per-message header block followed
//     by one block per recipient (Final-Recipient, Action, Status,
//     Diagnostic-Code, Remote-MTA).
//   - RFC 3463: enhanced status codes (class.subject.detail).
//   - RFC 5965: Abuse Reporting Format (message/feedback-report), with the
//     original message as message/rfc822 or text/rfc822-headers.
//   - RFC 3834: auto-replies are recognised so they are never taken for a
//     bounce.
//
// Many MTAs (qmail, older Exim and Postfix setups, Exchange, several large
// providers) send bounces that are not RFC 3464. For those Parse falls back to
// a small, documented heuristic (see heuristic.go) and marks the result
// Standard=false. The heuristic is conservative: a failure is Permanent only
// when a class-5 code is found in the bounce text and the recipient was named
// there too.
//
// MIME is parsed with github.com/emersion/go-message only; the limits in
// MaxSize, MaxParts and maxDepth bound the work done on hostile input.
package report
