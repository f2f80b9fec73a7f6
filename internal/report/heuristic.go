package report

import (
	"regexp"
	"strings"
)

// The heuristic for bounces that carry no message/delivery-status part.
// It is deliberately small:
//
//  1. The message must look like a bounce: sent by MAILER-DAEMON or
//     postmaster, or with a bounce-like Subject, or an X-Failed-Recipients
//     header (Exim).
//  2. The text is cut where the quoted original message starts, so that
//     codes and addresses in its headers are not taken for the failure.
//  3. Recipients come from X-Failed-Recipients, from "Final-Recipient:" /
//     "Original-Recipient:" lines in the text, from prose such as "delivering
//     your mail to <addr>", or else from a line starting with an address
//     (qmail, Postfix, Exim, Exchange); the first enhanced status code
//     (RFC 3463) in the text, else the first 4xx/5xx SMTP reply code, gives
//     the status.
//  4. Failing all that, the quoted original's To, if it names one address,
//     is the recipient, but such a result is never Permanent.

var (
	bounceSubjectRE = regexp.MustCompile(`(?i)undeliver|undelivered|delivery (status|failure|has failed|notification)|failure notice|returned mail|mail delivery|non.?deliver|could not be delivered|delivery failed|bounce|rejected|not delivered|mail system error|warning: could not send`)
	bounceFromRE    = regexp.MustCompile(`(?i)mailer-daemon|postmaster|mail delivery|mail administrator|mailer daemon`)
	autoReplyRE     = regexp.MustCompile(`(?i)^(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|away|vacation|abwesend)`)
	// cutRE finds where the quoted original message begins in the text.
	cutRE = regexp.MustCompile(`(?im)^(received|return-path|dkim-signature|message-id|x-received|authentication-results):|^.{0,20}(below this line is a copy|below is a copy|this is a copy of|original message follows|-+ ?original message ?-+|original message headers|undelivered message headers|content of the original)`)
	// lineRcptRE: a line that starts with an address, maybe quoted,
	// bracketed or after "-- ", followed by a colon, the end of the line,
	// "<mailto:", or a space and more text: qmail and Postfix ("<a@b>:
	// ..."), OpenSMTPD ("a@b: 550 ..."), Exim ("  a@b" alone), Exchange
	// ("a@b<mailto:a@b>", "a@b on <date>"), GMX ("\"a@b\":"), Exim 3
	// ("a@b ... unknown host"), Mimecast ("-- a@b"), Zoho ("a@b Invalid
	// Address, ...").
	lineRcptRE = regexp.MustCompile(`(?m)^[ \t]*(?:-- )?["<]?([A-Za-z0-9!#$%&'*+/=?^_{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)[">]?(?:[ \t]*:|[ \t]*$|<mailto:|[ \t]+\S)`)
	// sendmailRE: Sendmail's per-recipient lines, "550 <a@b>... User
	// unknown" or "<a@b>... Deferred".
	sendmailRE = regexp.MustCompile(`(?m)^[ \t]*(?:[45][0-9][0-9][ -])?<([^<>\s]+@[^<>\s]+)>\.\.\.`)
	// labelRcptRE: a recipient named after a DSN-like label.
	labelRcptRE = regexp.MustCompile(`(?im)^\s*(?:final-recipient|original-recipient|x-failed-recipients|failed recipient|recipient address|original recipient|recipient|rcpt to|unknown user|invalid final delivery userid|addressed to)\s*:\s*(?:rfc822\s*;\s*)?<?([^<>\s;]+@[^<>\s;]+)`)
	// deliverToRE: prose naming the recipient in angle brackets, as
	// DragonFly and many others do ("error delivering your mail to <a@b>").
	deliverToRE = regexp.MustCompile(`(?i)(?:deliver(?:ing|ed|y)?|send(?:ing)?|sent)\s+(?:(?:of\s+)?(?:your|the|this)\s+(?:mail|message|e-?mail)\s+)?to\s+<([^<>\s]+@[^<>\s]+)>`)
	// smtpCodeRE: an SMTP reply code at a word boundary followed by a
	// space, dash or a dot-less text (RFC 5321 section 4.2).
	// delayedRE: warnings that a message is only delayed (Gmail, Exim,
	// Sendmail); with no code found they give 4.0.0, never permanent.
	delayedRE  = regexp.MustCompile(`(?i)has been delayed|warning message only|will be retried|temporary failure|still being retried`)
	smtpCodeRE = regexp.MustCompile(`(?:^|[^0-9.#-])([45][0-5][0-9])[ -][^0-9]`)
)

func looksLikeBounce(s *scanner) bool {
	if s.top.Get("X-Failed-Recipients") != "" {
		return true
	}
	if bounceFromRE.MatchString(s.top.Get("From")) {
		return true
	}
	return bounceSubjectRE.MatchString(s.top.Get("Subject"))
}

func looksLikeAutoReply(s *scanner) bool {
	if looksLikeBounce(s) {
		return false
	}
	if strings.EqualFold(firstWord(s.top.Get("Auto-Submitted")), "auto-replied") {
		return true
	}
	if s.top.Get("X-Autoreply") != "" || s.top.Get("X-Autorespond") != "" {
		return true
	}
	return autoReplyRE.MatchString(strings.TrimSpace(s.top.Get("Subject")))
}

// heuristicBounce fills b from the report's own text (human); it reports
// whether it found a recipient.
func heuristicBounce(s *scanner, b *builder, text string) bool {
	rcpts, fromText := findRecipients(s, text)
	if len(rcpts) == 0 {
		return false
	}
	for i, a := range rcpts {
		seg := segment(text, rcpts, i)
		code, diag := findCode(seg)
		if code == "" {
			code, diag = findCode(text)
		}
		if code == "" && delayedRE.MatchString(text) {
			code = "4.0.0"
		}
		st := Status{Recipient: a, Action: action(code), Status: code, Diagnostic: diag}
		st.Permanent = fromText && strings.HasPrefix(code, "5.")
		b.add(st, seg)
	}
	return true
}

// segment returns the part of text that is about rcpts[i]: from the line
// where it is first named to where a line begins with another recipient, so that a
// bounce listing several recipients gives each its own code (qmail, Exim,
// Mail.ru). It is "" when the recipient is not named in text.
func segment(text string, rcpts []string, i int) string {
	lower := asciiLower(text)
	start := strings.Index(lower, asciiLower(rcpts[i]))
	if start < 0 {
		return ""
	}
	from := start + len(rcpts[i])
	// The line it is named on belongs to it: ">>> RCPT To:<a@b>" says
	// which command the next reply answered.
	start = strings.LastIndexByte(text[:start], '\n') + 1
	end := len(text)
	for j, a := range rcpts {
		if j == i {
			continue
		}
		// Only a line that starts with another recipient ends the segment:
		// one quoted within this recipient's lines is not a boundary.
		if k := lineStartIndex(lower[from:], asciiLower(a)); k >= 0 && from+k < end {
			end = from + k
		}
	}
	return text[start:end]
}

// lineStartIndex returns the offset of the first line of s that starts
// with addr (after blanks, a quote, a bracket, a reply code or "-- "),
// or -1.
func lineStartIndex(s, addr string) int {
	off := 0
	for off < len(s) {
		k := strings.Index(s[off:], addr)
		if k < 0 {
			return -1
		}
		at := off + k
		lineStart := strings.LastIndexByte(s[:at], '\n') + 1
		if strings.Trim(s[lineStart:at], " \t\"<-0123456789") == "" {
			return lineStart
		}
		off = at + len(addr)
	}
	return -1
}

// asciiLower lower-cases ASCII letters only, keeping byte offsets valid
// for the original string (strings.ToLower may change lengths).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// findCode returns the status code in text: an enhanced code, else one
// derived from an SMTP reply code, with the line it was found on.
func findCode(text string) (code, line string) {
	if loc := enhancedRE.FindStringSubmatchIndex(text); loc != nil {
		return text[loc[2]:loc[3]], lineAround(text, loc[2])
	}
	if loc := smtpCodeRE.FindStringSubmatchIndex(text); loc != nil {
		c := text[loc[2]:loc[3]]
		return c[:1] + ".0.0", lineAround(text, loc[2])
	}
	return "", ""
}

func lineAround(text string, i int) string {
	start := strings.LastIndexByte(text[:i], '\n') + 1
	end := strings.IndexByte(text[i:], '\n')
	if end < 0 {
		end = len(text) - i
	}
	return clean(text[start : i+end])
}

// findRecipients returns the failed addresses, and whether they were named
// by the bounce itself (rather than guessed from the quoted original).
func findRecipients(s *scanner, text string) ([]string, bool) {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		a = extractAddr(a)
		if a != "" && !seen[strings.ToLower(a)] && len(out) < MaxParts {
			seen[strings.ToLower(a)] = true
			out = append(out, a)
		}
	}
	for _, v := range s.top.Values("X-Failed-Recipients") {
		for _, a := range strings.Split(v, ",") {
			add(a)
		}
	}
	for _, m := range labelRcptRE.FindAllStringSubmatch(text, MaxParts) {
		add(m[1])
	}
	for _, m := range deliverToRE.FindAllStringSubmatch(text, MaxParts) {
		add(m[1])
	}
	for _, m := range sendmailRE.FindAllStringSubmatch(text, MaxParts) {
		add(m[1])
	}
	if len(out) == 0 {
		for _, m := range lineRcptRE.FindAllStringSubmatch(text, MaxParts) {
			add(m[1])
		}
	}
	if len(out) > 0 {
		return out, true
	}
	if s.original != nil {
		if to := s.original.Get("To"); to != "" && !strings.Contains(to, ",") {
			add(to)
		}
	}
	return out, false
}

// action maps a heuristic status to an RFC 3464 action: class 4 is
// "delayed", class 5 "failed", anything else unknown.
func action(code string) string {
	switch {
	case strings.HasPrefix(code, "4."):
		return "delayed"
	case strings.HasPrefix(code, "5."):
		return "failed"
	}
	return ""
}
