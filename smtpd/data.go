package smtpd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/address"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
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
	for i := 0; i < n; i++ {
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
	if err == io.EOF && c.prevCR {
		c.err = errBareNewline
		return n, c.err
	}
	return n, err
}

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
	br := bufio.NewReaderSize(io.TeeReader(&contentReader{r: r}, f), 32<<10)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return dataError(err, reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: the header is malformed (%v)", err))
	}
	headerFrom, list, err := ss.policy(h)
	if err != nil {
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
	msg := &queue.Message{
		ID: id, Tenant: ss.cred.Tenant, List: list, Credential: ss.cred.ID,
		From: ss.from.String(), HeaderFrom: headerFrom, Size: f.Size(), ReceivedAt: now, Body: f.Inline(),
		Client: queue.Client{Helo: ss.c.Hostname(), Addr: ss.addr.String(), TLS: ss.tls, Auth: ss.authed},
	}
	for i, a := range ss.rcpts {
		msg.Recipients = append(msg.Recipients, queue.Recipient{Index: i, Address: a.String()})
	}
	if err := ss.s.o.Queue.Enqueue(context.Background(), msg); err != nil {
		return internalError(ss.log, "committing a message", err)
	}
	committed = true
	ss.log.Info("smtp: queued", "msg", id, "tenant", msg.Tenant, "list", list, "rcpts", len(msg.Recipients), "size", msg.Size)
	// go-smtp writes whatever *SMTPError Data returns: a 250 carrying the
	// queue id, as Postfix's "queued as" does.
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as %s", id)
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

// policy checks the header: exactly one From field, every From address at
// one of the tenant's domains (CAN-SPAM: no misleading header
// information), and a known list. It returns the From address and list.
func (ss *session) policy(h textproto.Header) (string, string, error) {
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", "", reply(550, smtp.EnhancedCode{5, 6, 0},
			"Message refused: it must have exactly one From: header field (RFC 5322 section 3.6), it has %d", len(froms))
	}
	list, err := addrParser.ParseList(froms[0])
	if err != nil || len(list) == 0 {
		return "", "", reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: the From: header field is not a valid address (%v)", err)
	}
	for _, a := range list {
		parsed, err := address.Parse(a.Address)
		if err != nil {
			return "", "", reply(550, smtp.EnhancedCode{5, 6, 0}, "Message refused: bad From: address: %v", err)
		}
		if err := ss.checkDomain(parsed.Domain, "From: header"); err != nil {
			return "", "", err
		}
	}
	id := strings.ToLower(strings.TrimSpace(h.Get("X-Heed-List")))
	if id == "" {
		id = ss.cred.DefaultList
	}
	if _, err := ss.s.o.Tenants.List(context.Background(), ss.cred.Tenant, id); err != nil {
		if errors.Is(err, tenant.ErrNotFound) {
			return "", "", reply(550, codePolicy,
				"Unknown list %q: create it with PUT /api/v1/tenants/%s/lists/%s, or send without X-Heed-List", id, ss.cred.Tenant, id)
		}
		return "", "", internalError(ss.log, "looking up a list", err)
	}
	return list[0].Address, id, nil
}
