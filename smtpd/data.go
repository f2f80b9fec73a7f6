package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/address"
	"github.com/heedmail/heed/internal/compose"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// Refusals of the DATA content.
var (
	errBareNewline = reply(550, smtp.EnhancedCode{5, 6, 0},
		"Message refused: it contains a bare CR or LF. Every line must end with CRLF (RFC 5322 section 2.3); "+
			"bare line breaks are how a second message is smuggled past a relay (SMTP smuggling)")
	errNUL = reply(550, smtp.EnhancedCode{5, 6, 0},
		"Message refused: it contains a NUL character, which RFC 5322 does not allow")
)

// contentReader passes the DATA stream through and fails at the first bare
// CR, bare LF or NUL. With go-smtp's dot-unstuffing in front of it this
// catches every smuggling variant except ".<CR>" at the start of a line,
// which go-smtp drops before it gets here (and so never relays); the raw
// watch on plaintext connections catches that one too (see conn).
//
// Its error is sticky: a bufio.Reader that buffered the failing read keeps
// the error to itself, and its WriteTo then reads past it from here.
type contentReader struct {
	r      io.Reader
	prevCR bool
	err    error
}

func (c *contentReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	// Checked vectorised; only a faulty read is walked byte by byte, to
	// find where the fault is.
	if bytes.IndexByte(p[:n], 0) >= 0 || countBare(p[:n], c.prevCR) > 0 {
		if i, cerr := c.check(p[:n]); cerr != nil {
			return i, cerr
		}
	} else if n > 0 {
		c.prevCR = p[n-1] == '\r'
	}
	if err == io.EOF && c.prevCR {
		c.err = errBareNewline
		return n, c.err
	}
	return n, err
}

// check finds the first NUL, bare CR or bare LF in p, the byte-by-byte
// definition that Read's vectorised test stands for.
func (c *contentReader) check(p []byte) (int, error) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case b == 0:
			c.err = errNUL
		case c.prevCR && b != '\n', !c.prevCR && b == '\n':
			c.err = errBareNewline
		}
		if c.err != nil {
			return i, c.err
		}
		c.prevCR = b == '\r'
	}
	return len(p), nil
}

// dataReaders reuses the 32 KiB read buffers of DATA: allocating and
// zeroing one per message showed in the profile of a busy relay.
var dataReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

func (ss *session) Data(r io.Reader) error {
	// Bare line breaks seen on the raw connection since the previous DATA
	// count against this one: with pipelining, the bytes of a transaction
	// are often read before its MAIL command is handled.
	if ss.raw != nil {
		defer func() { ss.bareBase = ss.raw.bareCount() }()
	}
	now := ss.s.o.Now()
	id := ids.New(now)
	f := ss.s.o.Spool.NewBody(id)
	committed := false
	defer func() {
		if !committed {
			f.Abort()
		}
	}()
	br := dataReaders.Get().(*bufio.Reader)
	br.Reset(io.TeeReader(&contentReader{r: r}, f))
	defer func() {
		br.Reset(nil) // drop the references to this transaction
		dataReaders.Put(br)
	}()
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return dataError(err, reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: the header is malformed (%v)", err))
	}
	headerFrom, list, err := ss.policy(h)
	if err != nil {
		return err
	}
	if err := ss.listPolicy(list); err != nil {
		return err
	}
	if err := ss.pausePolicy(list.Kind == tenant.Marketing); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		// A refusal of the content or the size passes through; a client
		// that went away gets nothing; anything else is ours (451).
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se):
			return se
		case errors.Is(err, io.ErrUnexpectedEOF):
			return err
		}
		return internalError(ss.log, "spooling a message", err)
	}
	if ss.raw != nil && ss.raw.bareCount() > ss.bareBase {
		return errBareNewline
	}
	if err := f.Sync(); err != nil {
		return internalError(ss.log, "syncing a spool file", err)
	}
	if err := ss.composable(id, f, list); err != nil {
		return err
	}
	msg := &queue.Message{
		ID: id, Tenant: ss.cred.Tenant, List: list.ID, Credential: ss.cred.ID,
		From: ss.from.String(), HeaderFrom: headerFrom, Size: f.Size(), ReceivedAt: now, Body: f.Inline(),
		Client: queue.Client{Helo: ss.c.Hostname(), Addr: ss.addr.String(), TLS: ss.tls, Auth: ss.authed},
	}
	for i, a := range ss.rcpts {
		msg.Recipients = append(msg.Recipients, queue.Recipient{Index: i, Address: a.String()})
	}
	suppressed, err := ss.suppressed(msg.Recipients, list)
	if err != nil {
		return err
	}
	if err := ss.s.o.Queue.Enqueue(context.Background(), msg); err != nil {
		return internalError(ss.log, "committing a message", err)
	}
	committed = true
	if suppressed == len(msg.Recipients) && msg.Body == nil {
		// Nothing will be sent: the spooled body has no reader.
		if err := ss.s.o.Spool.Remove(id); err != nil {
			ss.log.Warn("smtp: removing an unneeded body", "msg", id, "err", err)
		}
	}
	if list.Kind == tenant.Marketing && ss.s.o.MarketingSent != nil {
		ss.s.o.MarketingSent(msg.Tenant, strings.ToLower(headerFrom[strings.LastIndexByte(headerFrom, '@')+1:]))
	}
	ss.log.Info("smtp: queued", "msg", id, "tenant", msg.Tenant, "list", list.ID, "rcpts", len(msg.Recipients),
		"suppressed", suppressed, "size", msg.Size)
	// go-smtp writes whatever *SMTPError Data returns: a 250 carrying the
	// queue id, as Postfix's "queued as" does.
	if suppressed > 0 {
		return reply(250, smtp.EnhancedCode{2, 0, 0},
			"OK: queued as %s; %d of %d recipients are suppressed and will not be sent to (see the message.suppressed events)",
			id, suppressed, len(msg.Recipients))
	}
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as %s", id)
}

// composable refuses marketing mail Heed could not give its opt-out and
// postal address at delivery (no readable text part, a MIME structure it
// cannot parse), so the app hears now rather than from a bounce.
// Transactional mail is sent as it came whatever its body.
func (ss *session) composable(id string, f *queue.Body, l tenant.List) error {
	if l.Kind != tenant.Marketing {
		return nil
	}
	body := f.Inline()
	if body == nil {
		var err error
		if body, err = ss.s.o.Spool.ReadAll(id); err != nil {
			return internalError(ss.log, "reading back a spooled body", err)
		}
	}
	if err := compose.Check(body); err != nil {
		return reply(550, smtp.EnhancedCode{5, 6, 0},
			"Marketing mail refused: Heed must add the opt-out link and postal address to it and cannot: %v", err)
	}
	return nil
}

// listPolicy refuses what the list's kind forbids: marketing mail from a
// tenant with no postal address (CAN-SPAM, 15 U.S.C. 7704(a)(5)(A)(iii)).
func (ss *session) listPolicy(l tenant.List) error {
	if l.Kind != tenant.Marketing {
		return nil
	}
	t, err := ss.s.o.Tenants.Tenant(context.Background(), ss.cred.Tenant)
	if err != nil {
		return internalError(ss.log, "looking up a tenant", err)
	}
	if strings.TrimSpace(t.PostalAddress) == "" {
		return reply(550, codePolicy,
			"Marketing mail refused: the law (CAN-SPAM) requires the sender's postal address in every marketing message, "+
				"and tenant %q has none; set postal_address with PATCH /api/v1/tenants/%s", t.ID, t.ID)
	}
	return nil
}

// pausePolicy refuses the mail of a tenant the reputation guard paused
// (or only its marketing mail, reputation.pause_scope: marketing). The
// refusal is permanent, 550 5.7.1, not 451: a paused tenant needs a
// person to act (clean the list, ask for a resume), and a temporary
// reply would only make the app retry and pile mail up in its own queue
// until the pause ends, unnoticed; Amazon SES answers a paused account
// with a hard error too. The text gives the rate, the threshold and what
// to do; the queued mail is held, not bounced. A tenant paused for all
// its mail is refused at MAIL FROM, before its client sends a message
// (marketing false there: the list is known only from the message).
func (ss *session) pausePolicy(marketing bool) error {
	if ss.s.o.Paused == nil {
		return nil
	}
	why, paused := ss.s.o.Paused(ss.cred.Tenant, marketing)
	if !paused {
		return nil
	}
	return reply(550, codePolicy,
		"Tenant %q is paused to protect the relay's reputation: %s. Mail already queued is held, not lost; "+
			"remove the addresses that bounce or complain, then ask the relay's operator to resume the tenant", ss.cred.Tenant, why)
}

// suppressed marks each of rs Suppressed that the suppression list says
// list must not mail, and counts them. It is one read of the list for the
// whole message (suppression.CheckAll), not one per recipient.
func (ss *session) suppressed(rs []queue.Recipient, l tenant.List) (int, error) {
	if ss.s.o.Suppressions == nil {
		return 0, nil
	}
	addrs := make([]string, len(rs))
	for i, r := range rs {
		addrs[i] = r.Address
	}
	vs, err := suppression.CheckAll(context.Background(), ss.s.o.Suppressions, ss.cred.Tenant, l.ID, l.Kind, addrs)
	if err != nil {
		return 0, internalError(ss.log, "checking the suppression list", err)
	}
	n := 0
	for i, v := range vs {
		if v.Hit {
			rs[i].State, rs[i].Reason = queue.Suppressed, string(v.Entry.Reason)
			rs[i].LastReply = fmt.Sprintf("suppressed: %s (scope %s)", v.Entry.Reason, v.Entry.List)
			n++
		}
	}
	return n, nil
}

// dataError passes through the refusals of the content and the size
// limit, and answers anything else with alt.
func dataError(err error, alt error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return alt
}

// addrParser reads addresses without failing on display names in unknown
// charsets: only the addr-spec matters here.
var addrParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// policy checks the header: exactly one From field, every From, Sender
// and Resent-* originator address at one of the tenant's domains
// (CAN-SPAM: no misleading header information), and a known list. It
// returns the From address and list.
func (ss *session) policy(h textproto.Header) (string, tenant.List, error) {
	var none tenant.List
	// RFC 5322 section 2.2: the name is followed by the colon. Verifiers
	// disagree on "Subject : x" (dkimpy refuses it, go-msgauth takes it), so
	// a field like it would make the DKIM over-signing count unreliable.
	for f := h.Fields(); f.Next(); {
		if raw, err := f.Raw(); err == nil && (len(raw) <= len(f.Key()) || raw[len(f.Key())] != ':') {
			return "", none, reply(550, smtp.EnhancedCode{5, 6, 0},
				"Message refused: header field %q has a space before its colon (RFC 5322 section 2.2)", f.Key())
		}
	}
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", none, reply(550, smtp.EnhancedCode{5, 6, 0},
			"Message refused: it must have exactly one From: header field (RFC 5322 section 3.6), it has %d", len(froms))
	}
	list, err := ss.originator("From", froms[0])
	if err != nil {
		return "", none, err
	}
	if err := ss.otherOriginators(h); err != nil {
		return "", none, err
	}
	id := strings.ToLower(strings.TrimSpace(h.Get("X-Heed-List")))
	if id == "" {
		id = ss.cred.DefaultList
	}
	l, err := ss.s.o.Tenants.List(context.Background(), ss.cred.Tenant, id)
	if err != nil {
		if errors.Is(err, tenant.ErrNotFound) {
			return "", none, reply(550, codePolicy,
				"Unknown list %q: create it with PUT /api/v1/tenants/%s/lists/%s, or send without X-Heed-List", id, ss.cred.Tenant, id)
		}
		return "", none, internalError(ss.log, "looking up a list", err)
	}
	return list[0].Address, l, nil
}

// originator parses the value of an originator field (From, Sender,
// Resent-From, Resent-Sender) and refuses it unless every address in it
// is at one of the tenant's domains, and unless it holds exactly one
// mailbox where RFC 5322 allows no more (sender = "Sender:" mailbox,
// section 3.6.2; resent-sender likewise, section 3.6.6): a Sender names
// the one agent responsible for sending, and clients show one.
func (ss *session) originator(field, value string) ([]*mail.Address, error) {
	list, err := addrParser.ParseList(value)
	if err != nil || len(list) == 0 {
		return nil, reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: the %s: header field is not a valid address (%v)", field, err)
	}
	if oneMailbox[field] && len(list) > 1 {
		section := "3.6.2"
		if field != "Sender" {
			section = "3.6.6"
		}
		return nil, reply(550, smtp.EnhancedCode{5, 6, 0},
			"Message refused: the %s: header field must hold exactly one address (RFC 5322 section %s), it holds %d", field, section, len(list))
	}
	for _, a := range list {
		parsed, err := address.Parse(a.Address)
		if err != nil {
			return nil, reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: bad %s: address: %v", field, err)
		}
		if err := ss.checkDomain(parsed.Domain, field+": header"); err != nil {
			return nil, err
		}
	}
	return list, nil
}

// oneMailbox are the originator fields whose syntax is a single mailbox.
var oneMailbox = map[string]bool{"Sender": true, "Resent-Sender": true}

// otherOriginators holds Sender and the Resent-From and Resent-Sender of
// every resent block (RFC 5322 sections 3.6.2 and 3.6.6) to the rule
// From is held to: mail clients show them as who the mail is from ("on
// behalf of"), so another tenant's domain there would let one tenant
// send in another's name under Heed's DKIM signature. Resent blocks may
// repeat, so every field of each name is checked.
func (ss *session) otherOriginators(h textproto.Header) error {
	if n := len(h.Values("Sender")); n > 1 {
		return reply(550, smtp.EnhancedCode{5, 6, 0},
			"Message refused: it may have at most one Sender: header field (RFC 5322 section 3.6), it has %d", n)
	}
	for _, field := range []string{"Sender", "Resent-From", "Resent-Sender"} {
		for _, v := range h.Values(field) {
			if _, err := ss.originator(field, v); err != nil {
				return err
			}
		}
	}
	return nil
}
