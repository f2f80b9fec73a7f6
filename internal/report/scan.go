package report

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// scanner walks the MIME tree once and keeps the parts that matter.
type scanner struct {
	top      message.Header
	parts    int
	dsn      [][]byte          // bodies of message/delivery-status parts
	feedback *textproto.Header // the message/feedback-report fields
	original *textproto.Header // headers of the quoted original message
	text     strings.Builder   // human-readable text, for the heuristic
}

// tolerable reports whether a go-message error still left a usable entity:
// an unknown charset or transfer encoding only means the body is raw.
func tolerable(err error) bool {
	return err == nil || message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)
}

func scan(r io.Reader) (*scanner, error) {
	e, err := message.Read(r)
	if !tolerable(err) || e == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparsable, err)
	}
	s := &scanner{top: e.Header}
	if err := s.walk(e, 0); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *scanner) walk(e *message.Entity, depth int) error {
	s.parts++
	if s.parts > MaxParts || depth > maxDepth {
		return ErrTooLarge
	}
	mt, _, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		return s.walkMultipart(mr, depth)
	}
	switch mt {
	case "message/delivery-status", "message/global-delivery-status", "text/delivery-status":
		b, err := readLimited(e.Body, maxText)
		if err != nil {
			return err
		}
		s.dsn = append(s.dsn, b)
	case "message/feedback-report":
		h, err := readHeaderBlock(e.Body)
		if err == nil || h.Len() > 0 {
			s.feedback = &h
		}
	case "message/rfc822", "message/global", "text/rfc822-headers",
		"message/rfc822-headers", "message/global-headers":
		if s.original == nil {
			h, err := readHeaderBlock(e.Body)
			if err == nil || h.Len() > 0 {
				s.original = &h
			}
		}
	case "", "text/plain", "text/html":
		return s.addText(e.Body, mt == "text/html")
	}
	return nil
}

func (s *scanner) walkMultipart(mr message.MultipartReader, depth int) error {
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if !tolerable(err) || p == nil {
			// A broken boundary ends the walk; what was read still counts.
			return nil
		}
		if err := s.walk(p, depth+1); err != nil {
			return err
		}
	}
}

func (s *scanner) addText(r io.Reader, html bool) error {
	room := maxText - s.text.Len()
	if room <= 0 {
		return nil
	}
	b, err := readLimited(r, room)
	if err != nil {
		return err
	}
	t := string(b)
	if html {
		t = stripTags(t)
	}
	s.text.WriteString(t)
	s.text.WriteString("\n")
	return nil
}

// readLimited reads at most n bytes; a body that ends early or badly
// encoded yields what could be read.
// A truncated or mis-encoded body is common in bounces: keep going with
// what there is rather than refuse the whole report.
func readLimited(r io.Reader, n int) ([]byte, error) {
	b, _ := io.ReadAll(io.LimitReader(r, int64(n)))
	return b, nil
}

// readHeaderBlock reads one header block, tolerating a leading blank line.
func readHeaderBlock(r io.Reader) (textproto.Header, error) {
	br := bufio.NewReader(io.LimitReader(r, maxText))
	skipBlankLines(br)
	return textproto.ReadHeader(br)
}

func skipBlankLines(br *bufio.Reader) {
	for {
		b, err := br.Peek(1)
		if err != nil || (b[0] != '\n' && b[0] != '\r') {
			return
		}
		_, _ = br.ReadByte()
	}
}

// stripTags turns HTML into rough text: enough for finding codes and
// addresses, not for display.
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>' && in:
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&nbsp;", " ").Replace(b.String())
}
