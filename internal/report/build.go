package report

import (
	"fmt"
	"strings"
)

// builder collects a report's recipients, with for each one any text that
// is evidence about it beyond its Diagnostic (a Status comment, its part
// of a transcript), for judge.
type builder struct {
	r     *Report
	notes []string
}

// add appends a recipient, up to MaxParts of them.
func (b *builder) add(st Status, note string) {
	if st.Recipient == "" || len(b.r.Recipients) >= MaxParts {
		return
	}
	b.r.Recipients = append(b.r.Recipients, st)
	b.notes = append(b.notes, note)
}

// build decides what the scanned message is, most reliable evidence first:
// an ARF part, a delivery-status part, an auto-reply, then the heuristic.
func (s *scanner) build() (*Report, error) {
	b := &builder{r: &Report{}}
	r := b.r
	if s.original != nil {
		r.Original = originalFrom(s.original)
	}
	if s.feedback != nil {
		addFeedback(s.feedback, b)
		return r, nil
	}
	if s.original != nil && addJMRP(s.original, b) {
		return r, nil
	}
	for _, d := range s.dsn {
		parseDSN(d, b)
	}
	human := humanText(s.text.String())
	if len(r.Recipients) > 0 {
		r.Kind = Bounce
		r.Standard = true
		b.judge(human)
		return r, nil
	}
	if parseSES(s.text.String(), b) {
		if r.Kind == Bounce {
			b.judge("")
		}
		return r, nil
	}
	if looksLikeAutoReply(s) {
		r.Kind = AutoReply
		return r, nil
	}
	if (len(s.dsn) > 0 || looksLikeBounce(s)) && heuristicBounce(s, b, human) {
		r.Kind = Bounce
		b.judge(human)
		return r, nil
	}
	return nil, fmt.Errorf("%w: neither a delivery status notification nor a feedback report", ErrUnparsable)
}

// humanText is the report's own words: its text up to where the quoted
// original message begins, so that the original's headers and body are
// never taken for evidence.
func humanText(text string) string {
	if loc := cutRE.FindStringIndex(text); loc != nil {
		return text[:loc[0]]
	}
	return text
}

// judge decides the Reason and Verdict of every recipient of a bounce.
// human, the report's own text, is evidence about the recipient of a
// one-recipient report only: with several, it may be about another one.
func (b *builder) judge(human string) {
	rcpts := make([]string, len(b.r.Recipients))
	for i, st := range b.r.Recipients {
		rcpts[i] = st.Recipient
	}
	for i := range b.r.Recipients {
		st := &b.r.Recipients[i]
		note, more := b.notes[i], ""
		if len(rcpts) == 1 {
			more = human
		} else if !strings.Contains(note, st.Recipient) {
			// A DSN's recipients: the lines of the text about this one
			// (OpenSMTPD writes "a@b: 550 5.1.1 ..." there only).
			note += "\n" + segment(human, rcpts, i)
		}
		st.Reason, st.Verdict = judgeStatus(st, note, more)
	}
}

// judgeStatus weighs one recipient's action, codes and text. A verdict is
// Hard only for a hard reason in a failure that is final: not "delayed"
// (RFC 3464 section 2.3.3) and not of class 4 (RFC 3463 section 3.1:
// "persistent transient failure").
//
// note is text about this recipient alone, whose codes may refine its
// status; more is text that is only read for words, since a reporting
// MTA's summary may gloss the remote reply with a code of its own
// (Sendmail turns "550 5.0.0 User unknown" answered to DATA into "550
// 5.1.1").
func judgeStatus(st *Status, note, more string) (Reason, Verdict) {
	switch st.Action {
	case "delivered", "relayed", "expanded":
		return Delivered, NotActionable
	}
	text := st.Diagnostic + "\n" + note
	code := replyCode(st.Diagnostic)
	best := bestStatus(st.Status, text)
	reason := classify(evidence{code: code, status: best, text: text + "\n" + more})
	if st.Action == "delayed" {
		return reason, Soft
	}
	class := classOf(st.Status, code)
	if st.Status == "" && class == 0 {
		class = classOf(best, 0)
	}
	return reason, Judge(reason, class)
}

// bestStatus picks the most specific enhanced code for a recipient: the
// Status field unless it is the catch-all X.0.0, else the last code of the
// same class in the diagnostic, where relays quote the reply of the server
// that refused (Amazon SES: "5.1.0 - Unknown address error 550-'5.7.1
// ... Access denied'").
func bestStatus(field, diag string) string {
	if field != "" && !strings.HasSuffix(field, ".0.0") {
		return field
	}
	codes := enhancedRE.FindAllStringSubmatch(diag, 16)
	for i := len(codes) - 1; i >= 0; i-- {
		c := codes[i][1]
		if strings.HasSuffix(c, ".0.0") {
			continue
		}
		if field == "" || c[0] == field[0] {
			return c
		}
	}
	return field
}

// replyCode returns the first SMTP reply code in a diagnostic, or 0.
func replyCode(diag string) int {
	m := smtpCodeRE.FindStringSubmatch(diag + " ")
	if m == nil {
		return 0
	}
	return int(m[1][0]-'0')*100 + int(m[1][1]-'0')*10 + int(m[1][2]-'0')
}
