package smtpd

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/internal/unread"
	"github.com/heedmail/heed/suppression"
)

// handleReport turns a report to the return path into suppressions and
// events: a hard bounce of the recipient the VERP address names
// suppresses it on every list of the tenant, a soft one counts towards
// the repetition rule (docs/bounces.md), an ARF complaint suppresses the
// complainant. A report Heed
// cannot read, that names no message Heed knows, that is feedback rather
// than a complaint, or a delivery report that says nothing Heed can act
// on, is kept for the operator (see held); it is accepted all the same,
// since refusing it would only bounce it back to a machine.
func (s *inboundSession) handleReport(body []byte) error {
	rep, err := report.Parse(body)
	if err != nil {
		return s.keepUnread(body, unread.Report{Reason: unread.Unparsable, Detail: err.Error()})
	}
	keep := held(rep)
	for _, target := range s.reports {
		m, idx := target.msg, target.index
		if m == nil {
			// A feedback-loop address: the original's return path names
			// the message.
			var err error
			if m, idx, err = s.originalOf(rep); err != nil {
				return err
			}
			if m == nil {
				// At most one feedback-loop target per transaction (see
				// returnPath), so the report is kept at most once.
				if keep == nil {
					keep = &unread.Report{Reason: unread.UnknownMessage, Detail: "the report names no message Heed knows"}
				}
				continue
			}
		}
		if keep != nil && keep.MessageID == "" {
			keep.Tenant, keep.MessageID = m.Tenant, m.ID
		}
		if rep.Kind == report.Feedback {
			if err := s.feedback(rep, m, idx); err != nil {
				return err
			}
		}
		if err := s.apply(rep, m, idx); err != nil {
			return err
		}
	}
	if keep == nil {
		return nil
	}
	keep.Kind = rep.Kind.String()
	return s.keepUnread(body, *keep)
}

// held says why a report Heed can read is kept for the operator whatever
// message it names; nil when only an unknown message would keep it.
// Feedback that is not a complaint is kept: an auth-failure report
// (RFC 6591) says the tenant's DKIM, SPF or DMARC is failing somewhere,
// which only a human can fix. A delivery report is kept when it names no
// recipient, or no reason for any recipient's failure (report.Undetermined):
// Heed acts on none of it, and a human may. Soft bounces with a reason,
// deliveries and auto-replies are not kept: they are common, the first
// are events of the tenant's already, and the others need nothing.
func held(rep *report.Report) *unread.Report {
	switch rep.Kind {
	case report.Feedback:
		return &unread.Report{Reason: unread.Feedback, FeedbackType: rep.FeedbackType,
			Detail: "an ARF report of feedback type " + strconv.Quote(rep.FeedbackType) + ", not a complaint: it suppresses nobody"}
	case report.Bounce:
		if len(rep.Recipients) == 0 {
			return &unread.Report{Reason: unread.NotActionable, Detail: "a delivery report that names no recipient"}
		}
		for _, st := range rep.Recipients {
			if st.Reason != report.Undetermined {
				return nil
			}
		}
		return &unread.Report{Reason: unread.NotActionable, Detail: "a delivery report that gives no reason for any failure"}
	}
	return nil
}

// feedback records a report.feedback event for the tenant whose message
// an ARF feedback report (auth-failure, not-spam, virus) is about: the
// report suppresses nobody, but the tenant and the operator see it.
func (s *inboundSession) feedback(rep *report.Report, m *queue.Message, idx int) error {
	if s.in.o.Events == nil {
		return nil
	}
	err := s.in.o.Events.Record(context.Background(), &events.Event{
		Type: events.ReportFeedback, Time: s.in.o.Now(),
		Data: events.Data{Tenant: m.Tenant, MessageID: m.ID, Recipient: m.Recipients[idx].Address, List: m.List,
			Reason: rep.FeedbackType, Channel: "arf"},
	})
	if err != nil {
		return internalError(s.in.log, "recording a feedback report", err)
	}
	return nil
}

// originalOf finds the message of an ARF report through the VERP
// return path of the copy it quotes; (nil, 0, nil) when it names none.
func (s *inboundSession) originalOf(rep *report.Report) (*queue.Message, int, error) {
	if rep.Original == nil {
		return nil, 0, nil
	}
	rp := strings.Trim(strings.TrimSpace(rep.Original.ReturnPath), "<>")
	id, idx, err := s.in.o.VERP.Parse(rp)
	if err != nil {
		return nil, 0, nil
	}
	m, err := s.in.o.Messages.Message(context.Background(), id)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, internalError(s.in.log, "looking up a message", err)
	}
	if idx >= len(m.Recipients) || m.Recipients[idx].Index != idx {
		return nil, 0, nil
	}
	return m, idx, nil
}

// apply records what rep says about recipient idx of m.
func (s *inboundSession) apply(rep *report.Report, m *queue.Message, idx int) error {
	rcpt := m.Recipients[idx].Address
	switch rep.Kind {
	case report.Complaint:
		e := suppression.Entry{Tenant: m.Tenant, Address: rcpt, List: suppression.All, MessageID: m.ID,
			Reason: suppression.Complaint, Channel: "arf"}
		_, err := s.in.o.Suppressions.Add(context.Background(), e, events.RecipientComplained)
		if err != nil && !errors.Is(err, suppression.ErrInvalid) {
			return internalError(s.in.log, "recording a complaint", err)
		}
		s.in.log.Info("inbound: complaint recorded", "tenant", m.Tenant, "msg", m.ID, "rcpt", idx)
	case report.Bounce:
		st, ok := permanentFor(rep, rcpt)
		if !ok {
			s.in.log.Info("inbound: a transient or unclear delivery report", "msg", m.ID, "rcpt", idx)
			return s.deferred(rep, m, rcpt)
		}
		return s.bounced(m, idx, st)
	}
	return nil
}

// bounced records a final failure the report gives for recipient idx of
// m, with its message.bounced event: a hard one suppresses the address, a
// soft one counts towards suppression (suppression.SoftRule), both in the
// transaction of the event. The report's own dates are not trusted: the
// bounce is dated when it arrived.
func (s *inboundSession) bounced(m *queue.Message, idx int, st report.Status) error {
	rcpt, now := m.Recipients[idx].Address, s.in.o.Now()
	ev := &events.Event{Type: events.MessageBounced, Time: now, Data: events.Data{
		Tenant: m.Tenant, MessageID: m.ID, Recipient: rcpt, List: m.List, Channel: "dsn",
		Reply: strings.TrimSpace(st.Status + " " + st.Diagnostic), Reason: string(st.Reason), BounceType: st.Verdict.String(),
	}}
	f := suppression.Failure{Tenant: m.Tenant, Address: rcpt, Hard: st.Verdict == report.Hard,
		SoftBounce: suppression.SoftBounce{Time: now, MessageID: m.ID, Status: st.Status, Reason: string(st.Reason),
			Diagnostic: st.Diagnostic, Channel: "dsn"}}
	suppressed, err := s.in.o.Suppressions.Bounce(context.Background(), f, ev)
	if err != nil {
		return internalError(s.in.log, "recording a bounce", err)
	}
	s.in.log.Info("inbound: bounce recorded", "tenant", m.Tenant, "msg", m.ID, "rcpt", idx,
		"verdict", st.Verdict.String(), "reason", st.Reason, "suppressed", suppressed)
	return nil
}

// permanentFor returns the status rep gives rcpt when it is a final
// failure: a hard verdict (report.Judge: the address is gone, and the
// failure is final), or a soft one with Action failed and a class-5
// status. A delay, or a report that says nothing final about rcpt, is not
// one. The verdict, not the Status field, decides: 5.2.1 is often a
// disabled mailbox that comes back, and "550 5.1.1 ... mailbox full" is a
// full mailbox. The VERP address already names the recipient, so a
// single status counts even when the report spells the recipient
// differently (forwarding, aliases); with several, the one naming rcpt
// decides.
func permanentFor(rep *report.Report, rcpt string) (report.Status, bool) {
	final := func(st report.Status) bool {
		return st.Verdict == report.Hard || st.Verdict == report.Soft && st.Permanent
	}
	if len(rep.Recipients) == 1 {
		st := rep.Recipients[0]
		return st, final(st)
	}
	for _, st := range rep.Recipients {
		if final(st) && strings.EqualFold(strings.Trim(st.Recipient, "<>"), rcpt) {
			return st, true
		}
	}
	return report.Status{}, false
}

// deferred tells the tenant of a report that delivery is delayed: an
// event only, nothing is suppressed or counted.
func (s *inboundSession) deferred(rep *report.Report, m *queue.Message, rcpt string) error {
	if s.in.o.Events == nil {
		return nil
	}
	reply := ""
	for _, st := range rep.Recipients {
		if st.Status != "" {
			reply = strings.TrimSpace(st.Status + " " + st.Diagnostic)
			break
		}
	}
	err := s.in.o.Events.Record(context.Background(), &events.Event{
		Type: events.MessageDeferred, Time: s.in.o.Now(),
		Data: events.Data{Tenant: m.Tenant, MessageID: m.ID, Recipient: rcpt, List: m.List, Reply: reply, Channel: "dsn"},
	})
	if err != nil {
		return internalError(s.in.log, "recording a delivery report", err)
	}
	return nil
}

// keepUnread stores the start of a report Heed did not act on, with why
// and how it came, durably, before the 250, and logs where: never
// silently lost, and never bounced back to the machine that sent it.
// reports/unread is bounded (see unread.Store); making room deletes the
// oldest reports, not this one.
func (s *inboundSession) keepUnread(body []byte, r unread.Report) error {
	if s.in.o.Unread == nil {
		s.in.log.Warn("inbound: a report Heed does not act on was dropped", "reason", r.Reason, "detail", r.Detail, "size", len(body))
		return nil
	}
	r.MailFrom, r.Recipients = s.from, s.returnPaths
	if s.addr.IsValid() {
		r.Client = s.addr.String()
	}
	r, err := s.in.o.Unread.Keep(r, body)
	if err != nil {
		return internalError(s.in.log, "keeping a report for the operator", err)
	}
	s.in.log.Warn("inbound: a report Heed does not act on was kept for the operator",
		"id", r.ID, "reason", r.Reason, "detail", r.Detail, "tenant", r.Tenant, "msg", r.MessageID, "size", len(body),
		"dir", s.in.o.Unread.Dir())
	return nil
}
