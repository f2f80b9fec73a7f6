package smtpd

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/suppression"
)

// handleReport turns a report to the return path into suppressions: a
// permanent failure of the recipient the VERP address names is a bounce
// (every list of the tenant), an ARF report a complaint. A report that
// cannot be parsed, or a transient failure, changes nothing and is
// logged: it is accepted, since refusing it would only bounce it back to
// a machine.
func (s *inboundSession) handleReport(body []byte) error {
	rep, err := report.Parse(body)
	if err != nil {
		return s.keepUnread(body, err)
	}
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
				if err := s.keepUnread(body, errors.New("the report names no message Heed knows")); err != nil {
					return err
				}
				continue
			}
		}
		if err := s.apply(rep, m, idx); err != nil {
			return err
		}
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
	e := suppression.Entry{Tenant: m.Tenant, Address: rcpt, List: suppression.All, MessageID: m.ID}
	var also []events.Type
	switch rep.Kind {
	case report.Complaint:
		e.Reason, e.Channel = suppression.Complaint, "arf"
		also = append(also, events.RecipientComplained)
	case report.Bounce:
		if !permanentFor(rep, rcpt) {
			s.in.log.Info("inbound: a transient or unclear delivery report", "msg", m.ID, "rcpt", idx)
			return s.deferred(rep, m, rcpt)
		}
		e.Reason, e.Channel = suppression.Bounce, "dsn"
		also = append(also, events.MessageBounced)
	default:
		return nil
	}
	_, err := s.in.o.Suppressions.Add(context.Background(), e, also...)
	if err != nil && !errors.Is(err, suppression.ErrInvalid) {
		return internalError(s.in.log, "recording a "+string(e.Reason), err)
	}
	s.in.log.Info("inbound: "+string(e.Reason)+" recorded", "tenant", m.Tenant, "msg", m.ID, "rcpt", idx)
	return nil
}

// permanentFor reports whether rep says the mailbox of rcpt is gone for
// good (queue.MailboxGone: 5.1.1 and its kin); a late 5.7.1 for content,
// a full mailbox or a size refusal bounce that message, not the address.
// The VERP address already names the recipient, so a single status
// counts even when the report spells the recipient differently
// (forwarding, aliases); with several, the one naming rcpt decides.
func permanentFor(rep *report.Report, rcpt string) bool {
	gone := func(st report.Status) bool { return st.Permanent && queue.MailboxGone(st.Status) }
	if len(rep.Recipients) == 1 {
		return gone(rep.Recipients[0])
	}
	for _, st := range rep.Recipients {
		if gone(st) && strings.EqualFold(strings.Trim(st.Recipient, "<>"), rcpt) {
			return true
		}
	}
	return false
}

// deferred tells the tenant of a report that delivery is delayed or
// failed for now: an event only, nothing is suppressed.
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
		Type: events.MessageDeferred, Time: time.Now(),
		Data: events.Data{Tenant: m.Tenant, MessageID: m.ID, Recipient: rcpt, List: m.List, Reply: reply, Channel: "dsn"},
	})
	if err != nil {
		return internalError(s.in.log, "recording a delivery report", err)
	}
	return nil
}

// keepUnread stores the start of a report Heed cannot read, durably,
// before the 250, and logs where: never silently lost, and never bounced
// back to the machine that sent it. reports/unread is bounded (see
// unreadStore); making room deletes the oldest reports, not this one.
func (s *inboundSession) keepUnread(body []byte, why error) error {
	if s.in.unread == nil {
		s.in.log.Warn("inbound: a report that cannot be read was dropped", "err", why, "size", len(body))
		return nil
	}
	path, err := s.in.unread.keep(body)
	if err != nil {
		return internalError(s.in.log, "keeping an unreadable report", err)
	}
	s.in.log.Warn("inbound: a report that cannot be read was kept", "file", path, "err", why, "size", len(body))
	return nil
}
