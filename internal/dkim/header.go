package dkim

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrBadMessage is wrapped by the errors of Sign and HeaderKeys that come
// from the message rather than from Heed: the sender's mistake, to refuse
// permanently (a 5xx), unlike a key problem, which is Heed's and worth a
// retry (a 4xx).
var ErrBadMessage = errors.New("dkim: message cannot be signed")

// errNoHeaderEnd is returned for a message whose header section never ends:
// go-msgauth could not sign or verify it either, and it is not RFC 5322
// mail.
var errNoHeaderEnd = fmt.Errorf("%w: no blank line ends its header", ErrBadMessage)

// walkHeader calls fn for each header field of msg, top to bottom, with the
// field's name and its whole raw text (continuation lines included, line
// ending excluded). It splits fields exactly as go-msgauth's readHeader
// does — a line starting with a space or tab continues the field above,
// the name is what precedes the first colon, trimmed — so that our count
// of a field agrees with what go-msgauth's header picker finds. Lines may
// end in CRLF or bare LF.
func walkHeader(msg []byte, fn func(name, field []byte)) error {
	_, err := walkFields(msg, fn)
	return err
}

// walkFields is walkHeader that also returns where the body starts: the
// offset just past the blank line.
func walkFields(msg []byte, fn func(name, field []byte)) (int, error) {
	var name []byte
	start, end := -1, -1 // bounds in msg of the field being gathered
	for pos := 0; ; {
		i := bytes.IndexByte(msg[pos:], '\n')
		if i < 0 {
			return 0, errNoHeaderEnd
		}
		lineEnd := pos + i
		if lineEnd > pos && msg[lineEnd-1] == '\r' {
			lineEnd--
		}
		line := msg[pos:lineEnd]
		switch {
		case len(line) == 0:
			if start >= 0 {
				fn(name, msg[start:end])
			}
			return pos + i + 1, nil
		case start >= 0 && (line[0] == ' ' || line[0] == '\t'):
			end = lineEnd
		default:
			if start >= 0 {
				fn(name, msg[start:end])
			}
			n, _, _ := bytes.Cut(line, []byte{':'})
			name, start, end = bytes.TrimSpace(n), pos, lineEnd
		}
		pos += i + 1
	}
}

// equalFoldASCII is strings.EqualFold for header field names, which are
// ASCII (RFC 5322 section 2.2); it checks the length first because most
// comparisons in HeaderKeys are between names of different lengths.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseTags splits a DKIM tag-list (RFC 6376 section 3.2) into tag and
// value, dropping folding white space, which the grammar allows around
// and inside every value Verify reads (d=, s=, a=, c=). Malformed pieces
// are skipped: go-msgauth's verifier is the one that judges the signature.
func parseTags(value string) map[string]string {
	tags := make(map[string]string)
	for piece := range strings.SplitSeq(value, ";") {
		k, v, ok := strings.Cut(piece, "=")
		if !ok {
			continue
		}
		tags[stripFWS(k)] = stripFWS(v)
	}
	return tags
}

// stripFWS removes all spaces, tabs and line breaks from s.
func stripFWS(s string) string {
	return strings.Join(strings.Fields(s), "")
}
