package report

import "fmt"

// build decides what the scanned message is, most reliable evidence first:
// an ARF part, a delivery-status part, an auto-reply, then the heuristic.
func (s *scanner) build() (*Report, error) {
	r := &Report{}
	if s.original != nil {
		r.Original = originalFrom(s.original)
	}
	if s.feedback != nil {
		addFeedback(s.feedback, r)
		return r, nil
	}
	if s.original != nil && addJMRP(s.original, r) {
		return r, nil
	}
	for _, b := range s.dsn {
		parseDSN(b, r)
	}
	if len(r.Recipients) > 0 {
		r.Kind = Bounce
		r.Standard = true
		return r, nil
	}
	if parseSES(s.text.String(), r) {
		return r, nil
	}
	if looksLikeAutoReply(s) {
		r.Kind = AutoReply
		return r, nil
	}
	if (len(s.dsn) > 0 || looksLikeBounce(s)) && heuristicBounce(s, r) {
		r.Kind = Bounce
		return r, nil
	}
	return nil, fmt.Errorf("%w: neither a delivery status notification nor a feedback report", ErrUnparsable)
}
