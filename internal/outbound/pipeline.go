package outbound

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"sync"
	"time"
)

// This file speaks the transaction itself, MAIL, RCPT and DATA, to a server
// that offers PIPELINING (RFC 2920): the three commands go out in one write
// and their replies are read afterwards, and the body goes out dot-stuffed
// in one more (or a few, for a large message). That is two round trips per
// message instead of four, which is most of a delivery's time to a distant
// server. go-smtp's client has no pipelining, so it still greets, does
// STARTTLS and AUTH, and serves servers without PIPELINING; once a
// connection pipelines, only this file and conn.close speak on it.

// maxReply bounds what one reply may make the reader take from the
// network, so a server cannot fill memory with an endless reply.
const maxReply = 64 << 10

// reply is one server reply: its code and its text, multi-line replies
// joined with "\n" (as net/textproto returns them).
type reply struct {
	code int
	text string
}

// replyReader reads replies from the server: the stdlib's textproto reader
// over a budget that each reply starts afresh.
type replyReader struct {
	budget budgetReader
	tp     *textproto.Reader
}

func newReplyReader(r io.Reader) *replyReader {
	rr := &replyReader{budget: budgetReader{r: r}}
	rr.tp = textproto.NewReader(bufio.NewReaderSize(&rr.budget, 1024))
	return rr
}

// read returns the next reply. A reply that is not SMTP (no three-digit
// code, too long) is an error, as is an I/O failure.
func (rr *replyReader) read() (reply, error) {
	rr.budget.n = maxReply
	code, text, err := rr.tp.ReadResponse(0)
	return reply{code, text}, err
}

// budgetReader fails once it has read n bytes.
type budgetReader struct {
	r io.Reader
	n int
}

var errReplyTooLong = fmt.Errorf("reply longer than %d bytes", maxReply)

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errReplyTooLong
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}

// bufPool holds the buffers commands and bodies are written from.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func putBuf(b *[]byte) {
	if cap(*b) <= 1<<20 { // a rare huge message does not stay pinned
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// pipelined is transaction for a server that offers PIPELINING; utf8 asks
// for SMTPUTF8, which transaction has checked the server offers. deliver
// has refused addresses with CR, LF or angle brackets.
func (t *Transport) pipelined(cn *conn, env Envelope, msg []byte, utf8 bool) (r Result, reusable, began bool) {
	host := cn.hop.addr()
	if cn.replies == nil {
		cn.replies = newReplyReader(cn.nc)
	}
	defer func() { _ = cn.nc.SetDeadline(time.Time{}) }()

	buf := bufPool.Get().(*[]byte)
	defer putBuf(buf)
	b := append((*buf)[:0], "MAIL FROM:<"...)
	b = append(b, env.From...)
	b = append(b, '>')
	if cn.has("8BITMIME") {
		b = append(b, " BODY=8BITMIME"...)
	}
	if cn.has("SIZE") && len(msg) > 0 {
		b = append(b, " SIZE="...)
		b = strconv.AppendInt(b, int64(len(msg)), 10)
	}
	if utf8 {
		b = append(b, " SMTPUTF8"...)
	}
	b = append(b, "\r\nRCPT TO:<"...)
	b = append(b, env.To...)
	b = append(b, ">\r\nDATA\r\n"...)
	*buf = b

	_ = cn.nc.SetDeadline(time.Now().Add(t.o.CommandTimeout))
	if _, err := cn.nc.Write(b); err != nil {
		return lost(host, "MAIL FROM", err), false, false
	}
	// The three replies are read whatever they say, so the session stays
	// in step (RFC 2920 section 3.1), unless the server is closing: after
	// a 421 nothing more comes. Each gets a command's time, as it would
	// unpipelined: the server answers them one after another.
	var reps [3]reply
	var rerr error
	n := 0
	for n < len(reps) {
		_ = cn.nc.SetDeadline(time.Now().Add(t.o.CommandTimeout))
		rep, err := cn.replies.read()
		if err != nil {
			rerr = err
			break
		}
		reps[n] = rep
		n++
		if rep.code == 421 {
			break
		}
	}
	mail, rcpt, data := reps[0], reps[1], reps[2]
	began = n > 0 && mail.code == 250
	// The session can carry another message only if every reply came, none
	// was 421, and DATA was not answered 354 in spite of a refusal: such a
	// server waits for a body that will not come. A refusal already read
	// decides the Result even if the server hung up after it (as Exim's
	// "drop" does): the reply is what the queue must act on.
	intact := n == len(reps) && data.code != 354 && data.code != 421
	var ok bool
	switch {
	case n == 0:
		return lost(host, "MAIL FROM", rerr), false, false
	case !began:
		r, ok = refused(host, "MAIL FROM", mail)
		return r, ok && intact, false // no transaction was opened
	case n == 1:
		return lost(host, "RCPT TO", rerr), false, true
	case rcpt.code/10 != 25:
		r, ok = refused(host, "RCPT TO", rcpt)
		return r, ok && intact && t.rset(cn), true
	case n == 2:
		return lost(host, "DATA", rerr), false, true
	case data.code != 354:
		r, ok = refused(host, "DATA", data)
		return r, ok && t.rset(cn), true
	}

	b, err := writeData(cn.nc, b, msg, dataChunk, 2*t.o.CommandTimeout)
	*buf = b
	if err != nil {
		return lost(host, "message data", err), false, true
	}
	// The final reply gets its own time, however long the body took, as
	// in go-smtp's client (RFC 5321 section 4.5.3.2.6 suggests 10 minutes,
	// which is twice the default command timeout).
	_ = cn.nc.SetDeadline(time.Now().Add(2 * t.o.CommandTimeout))
	end, err := cn.replies.read()
	if err != nil {
		return lost(host, "end of data", err), false, true
	}
	if end.code == 250 {
		return fromSuccess(end.text, host), true, true
	}
	// After the final dot the transaction is over either way (RFC 5321
	// section 4.1.1.4): a rejection leaves a clean session.
	r, reusable = refused(host, "end of data", end)
	return r, reusable, true
}

// dataChunk is about how much of a body writeData sends per write: a
// typical message goes out in one, a large one without a second copy of
// it in memory.
const dataChunk = 64 << 10

// writeData sends msg dot-stuffed and the end-of-data line, in writes of
// about chunk bytes cut after a line's LF, all within timeout (one deadline
// for the whole body, as go-smtp's client sets it, so a server that drains
// slowly cannot hold a worker for longer with a larger message). It stuffs
// into b and returns it, grown, for reuse.
func writeData(nc net.Conn, b, msg []byte, chunk int, timeout time.Duration) ([]byte, error) {
	_ = nc.SetDeadline(time.Now().Add(timeout))
	state := stuffBegin
	for {
		part := msg
		if len(msg) > chunk {
			if i := bytes.IndexByte(msg[chunk:], '\n'); i >= 0 {
				part = msg[:chunk+i+1]
			}
		}
		msg = msg[len(part):]
		b = slices.Grow(b[:0], len(part)+len(part)/32+8)
		if len(part) > 0 {
			b, state = appendStuffed(b, part)
		}
		if len(msg) == 0 {
			b = appendDataEnd(b, state)
		}
		if _, err := nc.Write(b); err != nil || len(msg) == 0 {
			return b, err
		}
	}
}

// rset aborts an open transaction and reports whether the session is still
// usable. Unlike go-smtp's Reset, it does not say EHLO again: RSET leaves
// the greeting in force (RFC 5321 section 4.1.1.5).
func (t *Transport) rset(cn *conn) bool {
	_ = cn.nc.SetDeadline(time.Now().Add(t.o.CommandTimeout))
	if _, err := io.WriteString(cn.nc, "RSET\r\n"); err != nil {
		return false
	}
	rep, err := cn.replies.read()
	return err == nil && rep.code == 250
}

// lost is the Result of a connection that failed during a transaction.
func lost(host, stage string, err error) Result {
	var pe textproto.ProtocolError
	if errors.As(err, &pe) || errors.Is(err, errReplyTooLong) {
		return temporary("4.5.0", "unreadable reply from %s at %s: %v", host, stage, err)
	}
	return temporary("4.4.2", "connection to %s failed at %s: %v", host, stage, err)
}

// refused is the Result of a reply other than the one the stage needs. A
// 4xx or 5xx passes on as it is and leaves the session usable unless it is
// 421 (the server is closing, RFC 5321 section 3.8); anything else is a
// server out of step, and the session is dropped.
func refused(host, stage string, rep reply) (r Result, reusable bool) {
	if rep.code < 400 || rep.code > 599 {
		return outOfStep(host, stage, rep.code, rep.text), false
	}
	return fromText(rep.code, rep.text, host), rep.code != 421
}

// outOfStep is the Result of a reply that fits no stage of the transaction
// (a 2xx where a refusal or another 2xx was due, a 3xx, a 6xx): a server out
// of step, whose session is dropped. Both paths use it.
func outOfStep(host, stage string, code int, text string) Result {
	return temporary("4.5.0", "unexpected reply from %s at %s: %d %s", host, stage, code, oneLine(text))
}

// appendDotStuffed appends msg to dst as DATA sends it (RFC 5321 section
// 4.5.2): a line that starts with "." gets another in front, a bare LF
// becomes CRLF, the last line is ended, and the "." line follows. The output
// is byte for byte what net/textproto's DotWriter writes (FuzzDotStuffing
// holds it to that), a line at a time instead of a byte at a time.
func appendDotStuffed(dst, msg []byte) []byte {
	dst, state := appendStuffed(dst, msg)
	return appendDataEnd(dst, state)
}

// The states DotWriter can be in between writes.
const (
	stuffBegin     = iota // nothing written
	stuffBeginLine        // after a line's LF
	stuffAfterCR          // after a CR that may end the line
	stuffData             // inside a line
)

// appendStuffed appends msg dot-stuffed, without the end of the data, and
// returns the state it leaves for appendDataEnd. msg must start at the
// start of a line (the whole message, or a part after an LF).
func appendStuffed(dst, msg []byte) ([]byte, int) {
	state := stuffBegin
	for len(msg) > 0 {
		line := msg
		i := bytes.IndexByte(msg, '\n')
		if i >= 0 {
			line = msg[:i]
		}
		if msg[0] == '.' {
			dst = append(dst, '.')
		}
		dst = append(dst, line...)
		// DotWriter's state after the line's bytes: a run of CRs at its end
		// alternates between "after CR" and "data" (a CR right after a CR
		// counts as data), so an odd run leaves a CR that ends the line.
		crs := 0
		for crs < len(line) && line[len(line)-1-crs] == '\r' {
			crs++
		}
		if i < 0 {
			state = stuffData
			if crs%2 == 1 {
				state = stuffAfterCR
			}
			break
		}
		if crs%2 == 0 {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		state = stuffBeginLine
		msg = msg[i+1:]
	}
	return dst, state
}

// appendDataEnd ends the last line, if it is not ended, and appends the
// "." line.
func appendDataEnd(dst []byte, state int) []byte {
	switch state {
	case stuffBegin, stuffData:
		return append(dst, "\r\n.\r\n"...)
	case stuffAfterCR:
		return append(dst, "\n.\r\n"...)
	default:
		return append(dst, ".\r\n"...)
	}
}
