package compose

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// The limits on what one message can make composition do. Render runs
// for every recipient and attempt, so a message past one is refused
// (marketing mail, with ErrMalformed, by Check too) or, transactional, sent
// as it came: never composed at a cost its size does not bound.
const (
	// maxDepth bounds multipart nesting. Real mail nests three or four
	// deep; each level holds a reader and its buffer, and reads its bytes
	// once more.
	maxDepth = 32
	// maxParts bounds the body parts scanned, at every depth, multiparts
	// included. Mail with a dozen attachments has a few dozen parts.
	maxParts = 1000
	// maxTextParts bounds the text/plain and text/html parts Render may
	// rewrite, each decoded, re-encoded and perhaps given a footer.
	maxTextParts = 50
	// maxPlaceholders bounds the placeholders filled in one copy: a
	// template has one or two of each per view.
	maxPlaceholders = 100
)

// leaf is a text/plain or text/html body part: one composition may
// rewrite. Offsets are into the message body.
type leaf struct {
	where     string // "body", or "part 1.2" in IMAP numbering, for errors
	top       bool   // the message is the part: header is the message's
	header    textproto.Header
	mediaType string
	params    map[string]string
	// hdrStart, bodyStart and end delimit the part's header and body.
	hdrStart, bodyStart, end int
	// tail is written after a rewritten body when the boundary that ends
	// the part followed its header without a line break of its own.
	tail string
	// boundaries are those of the enclosing multiparts, which a rewritten
	// body must not contain.
	boundaries []string
	// footer: on marketing mail the part carries the footer, if it lacks a
	// placeholder. It is the message's first displayed text: the first
	// text part of a multipart/mixed (or related, or any other multipart)
	// that holds one, and each view of a multipart/alternative.
	footer bool
}

func (l *leaf) html() bool { return l.mediaType == "text/html" }

// malformed makes the error of a part that cannot be composed. Its text
// ends up in an SMTP reply or a bounce: it is kept to one line of
// printable characters and cut short.
func malformed(where, format string, args ...any) error {
	why := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(fmt.Sprintf(format, args...)))
	if len(why) > 200 {
		why = strings.ToValidUTF8(why[:200], "") + "..."
	}
	return fmt.Errorf("%w: %s: %s", ErrMalformed, where, why)
}

// errNoText is the error of marketing mail with nowhere to put the opt-out.
var errNoText = fmt.Errorf("%w: marketing mail needs a text/plain or text/html part "+
	"to carry the unsubscribe link and postal address (a signed or encrypted body cannot be changed)", ErrMalformed)

// scan finds the text leaves of the message with header h and body body.
// go-message's multipart reader decides the structure: what it refuses is
// malformed. It does not say where a part lies, so scan follows it over
// the same bytes, re-reading each part's header from the boundary line on
// and checking that the body the reader returns is the bytes at that
// offset.
func scan(h *textproto.Header, body []byte) ([]leaf, error) {
	kind, mt, params, err := classify(h, "text/plain", "body")
	if err != nil {
		return nil, err
	}
	switch kind {
	case textPart:
		return []leaf{{where: "body", top: true, header: *h, mediaType: mt, params: params, end: len(body), footer: true}}, nil
	case multipartPart:
		s := scanner{body: body}
		err := s.multipart(0, len(body), mt, params["boundary"], nil, "", 1, true)
		return s.leaves, err
	}
	return nil, nil
}

type partKind int

const (
	opaquePart    partKind = iota // neither read nor changed
	textPart                      // a text/plain or text/html body part
	multipartPart                 // walked
)

// classify says what a part with header h is; defaultType applies when
// it has no Content-Type (RFC 2046 section 5.1: text/plain, or
// message/rfc822 in a digest).
func classify(h *textproto.Header, defaultType, where string) (partKind, string, map[string]string, error) {
	mt, params := defaultType, map[string]string(nil)
	v := h.Get("Content-Type")
	var perr error
	if v != "" {
		mt, params, perr = mime.ParseMediaType(v)
		if mt == "" {
			mt, _, _ = strings.Cut(strings.ToLower(v), ";")
			mt = strings.TrimSpace(mt)
		}
	}
	// A part sent as an attachment is the app's data, whatever its type.
	disp, _, _ := strings.Cut(h.Get("Content-Disposition"), ";")
	if strings.EqualFold(strings.TrimSpace(disp), "attachment") {
		return opaquePart, mt, params, nil
	}
	switch {
	case mt == "multipart/signed" || mt == "multipart/encrypted":
		// RFC 1847: changing the content would break the signature.
		return opaquePart, mt, params, nil
	case strings.HasPrefix(mt, "multipart/"):
		if perr != nil || params["boundary"] == "" {
			return 0, "", nil, malformed(where, "Content-Type %q has no usable boundary", v)
		}
		return multipartPart, mt, params, nil
	case mt == "text/plain" || mt == "text/html":
		if perr != nil {
			return 0, "", nil, malformed(where, "Content-Type %q cannot be parsed: %v", v, perr)
		}
		return textPart, mt, params, nil
	}
	return opaquePart, mt, params, nil
}

// scanner walks a multipart tree, collecting its text leaves.
type scanner struct {
	body   []byte
	leaves []leaf
	parts  int // the parts opened so far
	rd     bytes.Reader
	br     *bufio.Reader
	buf    []byte
}

// multipart walks the multipart entity whose body is s.body[start:end].
// shown says whether the entity is the displayed body (see leaf.footer).
func (s *scanner) multipart(start, end int, mt, boundary string, outer []string, path string, depth int, shown bool) error {
	where := "body"
	if path != "" {
		where = "part " + path
	}
	if depth > maxDepth {
		return malformed(where, "multipart nested more than %d deep", maxDepth)
	}
	body := s.body[start:end]
	mr := textproto.NewMultipartReader(bytes.NewReader(body), boundary)
	bounds := append(outer[:len(outer):len(outer)], boundary)
	defaultType := "text/plain"
	if mt == "multipart/digest" {
		defaultType = "message/rfc822"
	}
	alternative := mt == "multipart/alternative"
	claimed := false // a part before held text: later ones are not shown
	var off int      // start of the boundary line that opens the next part
	nl := "\r\n"
	for i := 1; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if i == 1 {
			off, nl = firstDelimiter(body, boundary)
		}
		switch {
		case i == 1 && off < 0:
			return malformed(where, "%s: no line %q starts a part", mt, "--"+boundary)
		case err != nil:
			return malformed(where, "%s with boundary %q: %v", mt, boundary, err)
		}
		if s.parts++; s.parts > maxParts {
			return malformed("body", "more than %d MIME parts", maxParts)
		}
		sub := strconv.Itoa(i)
		if path != "" {
			sub = path + "." + sub
		}
		pl, err := s.part(body, off, p, boundary, nl)
		if err != nil {
			return malformed("part "+sub, "%v", err)
		}
		off = pl.next
		kind, pmt, params, err := classify(&pl.header, defaultType, "part "+sub)
		if err != nil {
			return err
		}
		partShown := shown && (alternative || !claimed)
		switch kind {
		case textPart:
			if len(s.leaves) == maxTextParts {
				return malformed("body", "more than %d text/plain or text/html parts", maxTextParts)
			}
			s.leaves = append(s.leaves, leaf{
				where: "part " + sub, header: pl.header, mediaType: pmt, params: params,
				hdrStart: start + pl.hdrStart, bodyStart: start + pl.bodyStart, end: start + pl.end,
				tail: pl.tail, boundaries: bounds, footer: partShown,
			})
			claimed = true
		case multipartPart:
			n := len(s.leaves)
			err := s.multipart(start+pl.bodyStart, start+pl.end, pmt, params["boundary"], bounds, sub, depth+1, partShown)
			if err != nil {
				return err
			}
			claimed = claimed || len(s.leaves) > n
		}
	}
}

// placed is where a part lies in its multipart's body.
type placed struct {
	header                   textproto.Header
	hdrStart, bodyStart, end int
	next                     int // start of the following boundary line
	tail                     string
}

var errMoved = errors.New("the multipart reader and the offsets disagree")

// part places the part p the multipart reader just opened: its boundary
// line starts at off in body.
func (s *scanner) part(body []byte, off int, p io.Reader, boundary, nl string) (placed, error) {
	var pl placed
	eol := bytes.IndexByte(body[off:], '\n')
	if eol < 0 {
		return pl, errMoved
	}
	pl.hdrStart = off + eol + 1
	h, n, err := s.readHeader(body[pl.hdrStart:])
	if err != nil {
		return pl, err // the reader parsed it: not reached
	}
	pl.header, pl.bodyStart = h, pl.hdrStart+n
	if s.buf == nil {
		s.buf = make([]byte, 4096)
	}
	m := matcher{want: body[pl.bodyStart:]}
	if _, err := io.CopyBuffer(&m, p, s.buf); err != nil {
		if err == io.ErrUnexpectedEOF {
			return pl, fmt.Errorf("no closing boundary %q", "--"+boundary+"--")
		}
		return pl, err
	}
	pl.end = pl.bodyStart + m.n
	dash := "--" + boundary
	rest := body[pl.end:]
	switch {
	case len(rest) >= len(nl)+len(dash) && string(rest[:len(nl)]) == nl && string(rest[len(nl):len(nl)+len(dash)]) == dash:
		pl.next = pl.end + len(nl)
	case m.n == 0 && bytes.HasPrefix(rest, []byte(dash)):
		// The line break ending the header doubles as the boundary's.
		pl.next, pl.tail = pl.end, nl
	default:
		return pl, errMoved
	}
	return pl, nil
}

// readHeader parses the header at the start of b as the multipart reader
// did, and says how many bytes it takes.
func (s *scanner) readHeader(b []byte) (textproto.Header, int, error) {
	s.rd.Reset(b)
	if s.br == nil {
		s.br = bufio.NewReader(&s.rd)
	} else {
		s.br.Reset(&s.rd)
	}
	h, err := textproto.ReadHeader(s.br)
	return h, len(b) - s.rd.Len() - s.br.Buffered(), err
}

// matcher is a writer that checks what is written against want.
type matcher struct {
	want []byte
	n    int
}

func (m *matcher) Write(b []byte) (int, error) {
	if len(b) > len(m.want)-m.n || !bytes.Equal(b, m.want[m.n:m.n+len(b)]) {
		return 0, errMoved
	}
	m.n += len(b)
	return len(b), nil
}

// firstDelimiter finds the line opening the first part as go-message's
// reader does (RFC 2046 section 5.1.1: the boundary, optional white space,
// a line break, which may be a bare LF and then is for the whole
// multipart). It returns the line's offset and the line break.
func firstDelimiter(body []byte, boundary string) (int, string) {
	dash := "--" + boundary
	for off := 0; off < len(body); {
		line := body[off:]
		eol := bytes.IndexByte(line, '\n')
		if eol >= 0 {
			line = line[:eol+1]
		}
		if bytes.HasPrefix(line, []byte(dash)) {
			switch string(bytes.TrimLeft(line[len(dash):], " \t")) {
			case "\r\n":
				return off, "\r\n"
			case "\n":
				return off, "\n"
			}
		}
		if eol < 0 {
			break
		}
		off += eol + 1
	}
	return -1, ""
}

// errPlaceholders is the error of mail with more than maxPlaceholders.
var errPlaceholders = malformed("body", "more than %d {{heed_...}} placeholders", maxPlaceholders)

// countPlaceholders counts the placeholders in text.
func countPlaceholders(text string) int {
	if !strings.Contains(text, placeholderPrefix) {
		return 0
	}
	return strings.Count(text, urlPlaceholder) + strings.Count(text, addrPlaceholder)
}

// countPlaceholderBytes counts the placeholders in text.
func countPlaceholderBytes(text []byte) int {
	if !bytes.Contains(text, []byte(placeholderPrefix)) {
		return 0
	}
	return bytes.Count(text, []byte(urlPlaceholder)) + bytes.Count(text, []byte(addrPlaceholder))
}

// Check reports, with an error wrapping ErrMalformed, whether msg is mail
// Render could not compose as marketing mail: a header or MIME structure
// it cannot parse, a text part in an unknown transfer encoding or charset
// or whose encoding is broken, no text part at all, or more parts, text
// parts, nesting or placeholders than Render composes (maxParts and the
// rest). The SMTP server calls it at acceptance, so the app learns at once
// rather than from a bounce; transactional mail need not pass it (Render
// sends a body it cannot read as it came). A single-part message in UTF-8
// or US-ASCII costs a header parse and a search of the body.
func Check(msg []byte) error {
	h, body, err := Split(msg)
	if err != nil {
		return err
	}
	leaves, err := scan(&h, body)
	if err != nil {
		return err
	}
	if len(leaves) == 0 {
		return errNoText
	}
	var buf *bytes.Buffer // made for the first part that needs decoding
	placeholders := 0
	for i := range leaves {
		l := &leaves[i]
		if _, err := l.contentType(); err != nil {
			return err
		}
		raw := body[l.bodyStart:l.end]
		if l.identity() && trivialCharset(l.params["charset"]) {
			// Nothing to decode, nothing that can fail: the bytes are the
			// text.
			placeholders += countPlaceholderBytes(raw)
		} else {
			if buf == nil {
				buf = new(bytes.Buffer)
			}
			buf.Reset()
			if err := l.decode(raw, buf); err != nil {
				return err
			}
			placeholders += countPlaceholderBytes(buf.Bytes())
		}
		if placeholders > maxPlaceholders {
			return errPlaceholders
		}
	}
	return nil
}
