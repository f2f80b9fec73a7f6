package compose

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // every charset x/text knows
	"github.com/emersion/go-message/textproto"
)

// composeBody returns the body to send, in pieces, and the fields to set
// in the message header (Content-Type and Content-Transfer-Encoding of a
// single-part message that changed, MIME-Version).
func composeBody(h *textproto.Header, body []byte, in *Input) ([][]byte, []field, error) {
	if in.Kind == "" {
		return [][]byte{body}, nil, nil
	}
	marketing := in.Kind == kindMarketing
	leaves, err := scan(h, body)
	if err == nil && marketing && len(leaves) == 0 {
		err = errNoText
	}
	if err != nil {
		if marketing {
			return nil, nil, err
		}
		return [][]byte{body}, nil, nil // transactional: sent as it came
	}
	var f *filler // made for the first part that may change
	var edits []edit
	var set []field
	placeholders := 0
	for i := range leaves {
		l := &leaves[i]
		raw := body[l.bodyStart:l.end]
		if !marketing && !l.mayHold(raw) {
			continue
		}
		if f == nil {
			f = newFiller(in)
		}
		fields, nb, n, err := l.rewrite(raw, f)
		if placeholders += n; placeholders > maxPlaceholders {
			if marketing {
				return nil, nil, errPlaceholders
			}
			return [][]byte{body}, nil, nil
		}
		if err != nil && marketing {
			return nil, nil, err
		}
		if err != nil || nb == nil {
			continue // transactional: a part Heed cannot read goes as it came
		}
		if l.top {
			set = fields
			edits = append(edits, edit{0, len(body), nb})
			continue
		}
		var b bytes.Buffer
		b.Grow(l.bodyStart - l.hdrStart + len(nb) + 64)
		ew := errWriter{w: &b}
		if err := writeHeader(&ew, &l.header, fields); err != nil {
			return nil, nil, err
		}
		b.Write(nb)
		b.WriteString(l.tail)
		edits = append(edits, edit{l.hdrStart, l.end, b.Bytes()})
	}
	if len(edits) == 0 {
		return [][]byte{body}, nil, nil
	}
	if err := f.checkGrowth(len(body), edits, placeholders); err != nil {
		if marketing {
			return nil, nil, err
		}
		return [][]byte{body}, nil, nil
	}
	if !h.Has("Mime-Version") {
		set = append([]field{{"MIME-Version", "1.0"}}, set...)
	}
	return splice(body, edits), set, nil
}

// growthMargin is what a composed body may grow by whatever it holds. It
// pays for the fields Heed writes into the rewritten parts' headers
// (Content-Type with charset=utf-8, perhaps Content-Transfer-Encoding:
// under 128 octets a part), a meta tag's charset set to utf-8 in each HTML
// part (a few hundred octets at most, in its first 1,024) and the rounding
// of each re-encoding.
const growthMargin = 64 << 10

// checkGrowth refuses a composed body that is bigger than the stored one
// by more than this: the margin above; for each rewritten part four times
// its stored size; and three footers' length for each rewritten part and
// each placeholder filled (a placeholder's value is never longer than a
// footer, which carries both values).
//
// Composition cannot exceed it: the limits on parts and placeholders bound
// the footers and values, and the proportional term bounds re-encoding. A
// part's text grows at most threefold when decoded to UTF-8 (no charset
// spends less than a byte on a character that takes three in UTF-8, or on
// U+FFFD for a byte it cannot read; a transfer encoding only shrinks) or
// when its bare LFs become CRLF, and the
// encoding it is written in grows that by at most 4/3 plus line breaks
// (encode never picks quoted-printable when base64 is shorter): 4.11 times
// the part at worst, in a charset like TIS-620 (Thai). Real mail grows far
// less: UTF-8 text at most by base64's third, Latin-1 by its accents,
// Cyrillic in KOI8-R 2.7-fold. The footers and values, doubled by CRLF and
// base64, stay under three times their length. So the check is the last
// line of defence: were some change to composition to break the bound,
// the message is refused rather than sent to every recipient at a size
// its own does not bound. Check does not repeat it for that reason.
func (f *filler) checkGrowth(stored int, edits []edit, placeholders int) error {
	size, limit := stored, stored+growthMargin
	for _, e := range edits {
		size += len(e.b) - (e.end - e.start)
		limit += 4 * (e.end - e.start)
	}
	if size <= limit {
		return nil // as always: the footers need not be measured
	}
	if limit += 3 * f.footerLen() * (len(edits) + placeholders); size > limit {
		return malformed("body", "the composed body would be %d octets, more than the %d allowed for a stored body of %d", size, limit, stored)
	}
	return nil
}

// edit replaces body[start:end] with b.
type edit struct {
	start, end int
	b          []byte
}

// splice applies edits, which are in order and do not overlap, and
// returns the body as the pieces to write: no copy of the body is made.
func splice(body []byte, edits []edit) [][]byte {
	out := make([][]byte, 0, 2*len(edits)+1)
	at := 0
	for _, e := range edits {
		out = append(out, body[at:e.start], e.b)
		at = e.end
	}
	return append(out, body[at:])
}

// rewrite fills the placeholders of l and adds the footer it needs. It
// returns the fields to set in l's header, the new body, or nil when l
// does not change, and the number of placeholders l held.
func (l *leaf) rewrite(raw []byte, f *filler) ([]field, []byte, int, error) {
	ct, err := l.contentType()
	if err != nil {
		return nil, nil, 0, err
	}
	var b bytes.Buffer // a ReaderFrom: io.Copy needs no buffer of its own
	b.Grow(len(raw) + 512)
	if err := l.decode(raw, &b); err != nil {
		return nil, nil, 0, err
	}
	// Work with LF line breaks; encoding makes them CRLF again.
	text := strings.ReplaceAll(b.String(), "\r\n", "\n")
	n := countPlaceholders(text)
	text, changed := f.fill(text, l.html(), l.footer)
	if !changed {
		return nil, nil, n, nil
	}
	if ct != "" && l.html() {
		text = metaCharsetUTF8(text) // the part's charset becomes UTF-8
	}
	nb, cte := l.encode(text)
	var fields []field
	if ct != "" {
		fields = append(fields, field{"Content-Type", ct})
	}
	if cte != "" {
		fields = append(fields, field{"Content-Transfer-Encoding", cte})
	}
	return fields, nb, n, nil
}

// contentType is the Content-Type l gets when rewritten: its own, with
// charset=utf-8. It is "" when l already says UTF-8.
func (l *leaf) contentType() (string, error) {
	if strings.EqualFold(l.params["charset"], "utf-8") && l.header.Has("Content-Type") {
		return "", nil
	}
	params := make(map[string]string, len(l.params)+1)
	for k, v := range l.params {
		params[k] = v
	}
	params["charset"] = "utf-8"
	ct := mime.FormatMediaType(l.mediaType, params)
	if ct == "" {
		return "", malformed(l.where, "Content-Type %q cannot be written back", l.header.Get("Content-Type"))
	}
	return ct, nil
}

// cte is l's Content-Transfer-Encoding, in lower case, read exactly as
// go-message reads it when decoding.
func (l *leaf) cte() string {
	return strings.ToLower(l.header.Get("Content-Transfer-Encoding"))
}

// identity reports whether l's body is not transfer-encoded.
func (l *leaf) identity() bool {
	switch l.cte() {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// decode writes l's text, decoded from its transfer encoding and charset
// into UTF-8, to w.
func (l *leaf) decode(raw []byte, w io.Writer) error {
	switch cte := l.cte(); cte {
	case "", "7bit", "8bit", "binary", "quoted-printable", "base64":
	default:
		return malformed(l.where, "Content-Transfer-Encoding %q is unknown", cte)
	}
	e, err := message.New(message.Header{Header: l.header}, bytes.NewReader(raw))
	// charset="" means none: the body is then passed through undecoded.
	if message.IsUnknownCharset(err) {
		if strings.TrimSpace(l.params["charset"]) != "" {
			return malformed(l.where, "charset %q is unknown", l.params["charset"])
		}
	} else if err != nil {
		return malformed(l.where, "%v", err)
	}
	if _, err := io.Copy(w, e.Body); err != nil {
		return malformed(l.where, "%s body: %v", l.cte(), err)
	}
	return nil
}

// trivialCharset reports whether text in cs is UTF-8 as it stands.
func trivialCharset(cs string) bool {
	return cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii")
}

// asciiCompatible lists the charset families in which ASCII text, and so
// a placeholder, is encoded as ASCII bytes. In others (UTF-16, UTF-7,
// EBCDIC) only the decoded text tells.
var asciiCompatible = []string{"iso-8859-", "windows-", "cp125", "koi8-", "gb", "big5", "euc-", "shift_jis", "iso-2022-"}

// mayHold reports whether l's decoded text may hold a placeholder. It
// looks at the raw bytes when they are the text's, to spare decoding the
// common transactional part.
func (l *leaf) mayHold(raw []byte) bool {
	if !l.identity() {
		return true
	}
	cs := strings.ToLower(l.params["charset"])
	ok := trivialCharset(cs)
	for _, p := range asciiCompatible {
		ok = ok || strings.HasPrefix(cs, p)
	}
	return !ok || bytes.Contains(raw, []byte(placeholderPrefix))
}

// encode encodes text (LF line breaks) for l: base64 is kept;
// quoted-printable is kept, and 7bit, 8bit and binary while the text is
// 7-bit clean with short lines, and become quoted-printable otherwise; but
// quoted-printable that would be longer than base64 (text mostly outside
// ASCII) or hold an enclosing boundary is base64 instead. cte is the new
// Content-Transfer-Encoding, "" when it stays.
func (l *leaf) encode(text string) (body []byte, cte string) {
	switch l.cte() {
	case "base64":
		return encodeBase64(text), ""
	case "quoted-printable":
		if b := encodeQP(text); len(b) <= base64Len(text) && !l.holdsBoundary(b) {
			return b, ""
		}
		return encodeBase64(text), "base64"
	}
	if b := []byte(strings.ReplaceAll(text, "\n", "\r\n")); sevenBitClean(b) && !l.holdsBoundary(b) {
		return b, ""
	}
	if b := encodeQP(text); len(b) <= base64Len(text) && !l.holdsBoundary(b) {
		return b, "quoted-printable"
	}
	return encodeBase64(text), "base64"
}

// base64Len is the length of encodeBase64(text).
func base64Len(text string) int {
	n := base64.StdEncoding.EncodedLen(len(text) + strings.Count(text, "\n"))
	return n + 2*max(1, (n+75)/76)
}

func encodeQP(text string) []byte {
	var b bytes.Buffer
	b.Grow(len(text) + len(text)/8)
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(text)) // a bytes.Buffer does not fail
	w.Close()
	return b.Bytes()
}

// encodeBase64 encodes text with CRLF line breaks (RFC 2045 section 6.8:
// canonical form first) in lines of 76 characters.
func encodeBase64(text string) []byte {
	src := []byte(strings.ReplaceAll(text, "\n", "\r\n"))
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(src)))
	base64.StdEncoding.Encode(enc, src)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(out, enc[:76]...)
		out = append(out, crlf...)
		enc = enc[76:]
	}
	out = append(out, enc...)
	return append(out, crlf...)
}

// sevenBitClean reports whether b can go as 7bit (RFC 2045 section 2.7):
// no NUL or 8-bit octet, CR and LF only as CRLF, lines of at most 998
// octets.
func sevenBitClean(b []byte) bool {
	line := 0
	for i, c := range b {
		switch {
		case c == 0 || c >= 0x80:
			return false
		case c == '\r':
			if i+1 == len(b) || b[i+1] != '\n' {
				return false
			}
			continue
		case c == '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
			line = 0
			continue
		}
		if line++; line > 998 {
			return false
		}
	}
	return true
}

// holdsBoundary reports whether b has a line an enclosing multipart's
// reader would take for its boundary.
func (l *leaf) holdsBoundary(b []byte) bool {
	for _, bd := range l.boundaries {
		dash := "--" + bd
		if bytes.HasPrefix(b, []byte(dash)) || bytes.Contains(b, []byte("\n"+dash)) {
			return true
		}
	}
	return false
}
