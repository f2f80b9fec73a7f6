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
//   - RFC 6591 (auth-failure), RFC 6430 (not-spam): feedback reports that
//     are not the recipient's complaint (Kind Feedback).
//
// Many MTAs (qmail, older Exim and Postfix setups, Exchange, several large
// providers) send bounces that are not RFC 3464. For those Parse falls back to
// a small, documented heuristic (see heuristic.go) and marks the result
// Standard=false.
//
// Every recipient of a report gets a Reason and a Verdict. The reason is
// decided from all the evidence together: the reply code, the enhanced
// status, the diagnostic text, the SMTP command it answered and the
// report's own words (classify.go documents the rules and their order).
// Only a hard reason (user unknown, host unknown, moved, null MX) in a
// final failure is a Hard verdict, and only the recipient's own complaint
// is Complained; those two suppress (Verdict.Suppress). Everything else is
// Soft or NotActionable. Classify applies the same rules to an SMTP reply
// received while delivering.
//
// MIME is parsed with github.com/emersion/go-message only; the limits in
// MaxSize, MaxParts and maxDepth bound the work done on hostile input.
package report
