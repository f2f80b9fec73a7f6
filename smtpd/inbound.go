package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/address"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/unread"
	"github.com/heedmail/heed/suppression"
)

// Messages finds the message a mailto opt-out or a bounce refers to.
type Messages interface {
	Message(ctx context.Context, id string) (*queue.Message, error)
}

// InboundOptions configure the inbound listener.
type InboundOptions struct {
	Hostname string
	// MailtoDomain is unsubscribe.mailto_domain: mail to u-...@ it is an
	// opt-out (RFC 2369 mailto List-Unsubscribe).
	MailtoDomain string
	Tokens       *suppression.Keyring
	// VERP is the return path: DSNs to its addresses are bounces of one
	// message and recipient, ARF reports to it (or to fbl@, abuse@ its
	// domain) complaints.
	VERP     queue.VERP
	Messages Messages
	// Suppressions records what reports say; the relay's
	// (reputation.Complaints) also counts complaints and hard bounces in
	// the tenant's rates, in the same transaction.
	Suppressions suppression.Store
	// Events records what reports say without changing a suppression (a
	// transient failure); nil drops those.
	Events events.Recorder
	// Unread keeps the reports Heed could not read or chose not to act
	// on, for the operator (data_dir/reports/unread); nil keeps none.
	Unread *unread.Store
	// MaxMessagesPerMinute is how many transactions one client address
	// (an IPv6 client's /64) may start a minute, in bursts of as many;
	// more get 450 4.7.1 (default 600; negative: no limit).
	MaxMessagesPerMinute int
	// Now is the clock of the rate limit (default time.Now).
	Now func() time.Time
	// MaxMessageBytes bounds what is read (default 2 MiB: opt-out mail and
	// reports are small, and a report is held in memory to be parsed).
	MaxMessageBytes int64
	MaxConnections  int
	ReadTimeout     time.Duration
	// MaxConnectionsPerClient, FirstCommandTimeout, ReadTimeoutBeforeMail,
	// MaxSessionBeforeData and MaxCommandsBeforeData are Submission's
	// per-client cap and bounds of a client not yet trusted, with trust
	// lasting while a message's DATA is read and the bounds starting again
	// after it: this listener has no AUTH (zero = 10, 30 s, 60 s, 2
	// minutes, 20; an accepted RCPT is not counted as a command).
	MaxConnectionsPerClient int
	FirstCommandTimeout     time.Duration
	ReadTimeoutBeforeMail   time.Duration
	MaxSessionBeforeData    time.Duration
	MaxCommandsBeforeData   int
	// Unavailable is SubmissionOptions.Unavailable: the reports and
	// opt-outs that arrive here are written to the database too.
	Unavailable func() bool
	Logger      *slog.Logger
}

// Inbound is the SMTP listener for mail sent to Heed itself: mailto
// opt-outs (RFC 2369), delivery status notifications to the VERP return
// path (RFC 3464: a permanent failure becomes a bounce suppression) and
// abuse reports (RFC 5965 ARF: a complaint suppression). It accepts mail
// only for the addresses Heed made and is never a relay: anything else
// is refused at RCPT (550 5.7.1).
//
// Lifecycle: NewInbound, Serve (blocks), Shutdown.
type Inbound struct {
	o    InboundOptions
	log  *slog.Logger
	rate *clientRate // nil: no limit

	mu  sync.Mutex
	srv *smtp.Server
}

// NewInbound returns the listener.
func NewInbound(o InboundOptions) *Inbound {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 2 << 20
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 100
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = time.Minute
	}
	setDefault(&o.MaxConnectionsPerClient, 10)
	setDefault(&o.FirstCommandTimeout, 30*time.Second)
	setDefault(&o.ReadTimeoutBeforeMail, time.Minute)
	setDefault(&o.MaxSessionBeforeData, 2*time.Minute)
	setDefault(&o.MaxCommandsBeforeData, 20)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxMessagesPerMinute == 0 {
		o.MaxMessagesPerMinute = 600
	}
	in := &Inbound{o: o, log: o.Logger}
	if o.MaxMessagesPerMinute > 0 {
		in.rate = newClientRate(o.MaxMessagesPerMinute, o.Now)
	}
	return in
}

// Serve answers SMTP on l.
func (in *Inbound) Serve(l net.Listener) error {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return trustInData(c, &inboundSession{in: in, addr: remoteAddr(c.Conn())}), nil
	}))
	srv.Domain = in.o.Hostname
	srv.MaxMessageBytes = in.o.MaxMessageBytes
	srv.MaxRecipients = 100
	srv.ReadTimeout, srv.WriteTimeout = in.o.ReadTimeout, in.o.ReadTimeout
	srv.ErrorLog = slogLogger{in.log}
	in.mu.Lock()
	in.srv = srv
	in.mu.Unlock()
	return srv.Serve(&listener{Listener: l, max: in.o.MaxConnections, plaintext: true, timeout: 10 * time.Second,
		perClient: in.o.MaxConnectionsPerClient, firstCommand: in.o.FirstCommandTimeout, beforeTrust: in.o.ReadTimeoutBeforeMail,
		maxTime: in.o.MaxSessionBeforeData, maxCommands: in.o.MaxCommandsBeforeData,
		unavailable: in.o.Unavailable})
}

// Shutdown stops accepting and lets sessions finish until ctx ends.
func (in *Inbound) Shutdown(ctx context.Context) error {
	in.mu.Lock()
	srv := in.srv
	in.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		srv.Close()
		return err
	}
	return nil
}

// optOut is one mailto recipient of a transaction: who wants out of what.
type optOut struct {
	msg   *queue.Message
	index int
}

type inboundSession struct {
	in      *Inbound
	addr    netip.Addr // the client's, for the rate limit
	from    string     // the envelope sender, for a kept report's record
	optOuts []optOut
	// reports are the return-path recipients: the message and recipient
	// a VERP address names (msg nil for fbl@/abuse@, matched from the
	// report's copy of the original).
	reports []optOut
	// returnPaths are the return-path addresses the report was sent to,
	// as given, for a kept report's record.
	returnPaths []string
}

// feedbackLocals are the return-path domain's addresses feedback loops
// are registered with.
var feedbackLocals = map[string]bool{"fbl": true, "abuse": true, "feedback": true}

// errNoSuchAddress answers a forged address and one whose message is no
// longer known alike, so the answer tells nothing about the MAC.
var errNoSuchAddress = reply(550, smtp.EnhancedCode{5, 1, 1}, "No such address")

var errNotHere = reply(550, smtp.EnhancedCode{5, 7, 1},
	"Relaying refused: this server takes mail only for the addresses in the mail it sent")

// Mail starts a transaction (from is <> for reports), counted against
// the client's rate.
func (s *inboundSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	if s.in.rate != nil && !s.in.rate.allow(s.addr) {
		s.in.log.Warn("inbound: too much mail from one client", "client", s.addr, "per_minute", s.in.o.MaxMessagesPerMinute)
		// 450 4.7.1, as Postfix's anvil rate limit answers: the sender
		// keeps the message and tries again later (RFC 3463: 4.7.1,
		// delivery not authorized, for now).
		return reply(450, smtp.EnhancedCode{4, 7, 1},
			"Too much mail from your address: this server takes at most %d messages a minute from one client address; try again later",
			s.in.o.MaxMessagesPerMinute)
	}
	return nil
}

func (s *inboundSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	a, err := address.Parse(to)
	if err != nil {
		return reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: %v", err)
	}
	if s.in.o.VERP.Domain != "" && strings.EqualFold(a.Domain, s.in.o.VERP.Domain) {
		if err := s.returnPath(a); err != nil {
			return err
		}
		s.returnPaths = append(s.returnPaths, a.String())
		return nil
	}
	if !strings.EqualFold(a.Domain, s.in.o.MailtoDomain) || s.in.o.Tokens == nil {
		return errNotHere
	}
	id, idx, err := s.in.o.Tokens.ParseMailto(a.Local)
	if err != nil {
		// Forged or damaged: the same answer as an address nobody has.
		return errNoSuchAddress
	}
	o, err := s.recipientOf(id, idx)
	if err != nil {
		return err
	}
	s.optOuts = append(s.optOuts, o)
	return nil
}

// recipientOf is recipient idx of message id; a message no longer known
// gets the answer a forged address gets.
func (s *inboundSession) recipientOf(id string, idx int) (optOut, error) {
	m, err := s.in.o.Messages.Message(context.Background(), id)
	if errors.Is(err, queue.ErrNotFound) || err == nil && (idx >= len(m.Recipients) || m.Recipients[idx].Index != idx) {
		return optOut{}, errNoSuchAddress
	}
	if err != nil {
		return optOut{}, internalError(s.in.log, "looking up a message", err)
	}
	return optOut{msg: m, index: idx}, nil
}

// returnPath accepts a VERP address Heed made (its message still known)
// or a feedback-loop address.
func (s *inboundSession) returnPath(a address.Address) error {
	local := strings.ToLower(a.Local)
	if feedbackLocals[local] {
		// Taken once however many feedback-loop recipients a message
		// names: each would otherwise apply, or keep, the report again.
		if !slices.ContainsFunc(s.reports, func(o optOut) bool { return o.msg == nil }) {
			s.reports = append(s.reports, optOut{})
		}
		return nil
	}
	id, idx, err := s.in.o.VERP.Parse(a.String())
	if err != nil {
		return errNoSuchAddress
	}
	o, err := s.recipientOf(id, idx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(s.reports, func(r optOut) bool { return r.msg != nil && r.msg.ID == id && r.index == idx }) {
		s.reports = append(s.reports, o)
	}
	return nil
}

// Data records each recipient's opt-out, bounce or complaint, durably,
// before the 250. For a mailto opt-out the content does not matter (RFC
// 2369: the mail itself is the request).
func (s *inboundSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return err
	}
	if len(s.reports) > 0 {
		if err := s.handleReport(body); err != nil {
			return err
		}
	}
	for _, o := range s.optOuts {
		m, rc := o.msg, o.msg.Recipients[o.index]
		_, err := s.in.o.Suppressions.Add(context.Background(), suppression.Entry{
			Tenant: m.Tenant, Address: rc.Address, List: m.List, Reason: suppression.Unsubscribe,
			Channel: "mailto", MessageID: m.ID,
		}, events.RecipientUnsubscribed)
		if err != nil && !errors.Is(err, suppression.ErrInvalid) {
			return internalError(s.in.log, "recording a mailto opt-out", err)
		}
		s.in.log.Info("inbound: unsubscribed by mail", "tenant", m.Tenant, "list", m.List, "msg", m.ID)
	}
	if len(s.optOuts) == 0 {
		return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: report received")
	}
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: %s", plural(len(s.optOuts), "opt-out recorded", "opt-outs recorded"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (s *inboundSession) Reset()        { s.optOuts, s.reports, s.returnPaths, s.from = nil, nil, nil, "" }
func (s *inboundSession) Logout() error { return nil }
