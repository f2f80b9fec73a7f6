package report

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// parseDSN reads a message/delivery-status body (RFC 3464 section 2.1): a
// per-message block, then one block per recipient, separated by blank
// lines. Blocks are read with textproto.ReadHeader; a block is taken as
// per-recipient when it names a recipient, so MTAs that run everything into
// one block still yield their recipient.
func parseDSN(body []byte, b *builder) {
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	br := bufio.NewReader(bytes.NewReader(body))
	for blocks := 0; blocks <= MaxParts; blocks++ {
		skipBlankLines(br)
		if _, err := br.Peek(1); err != nil {
			return
		}
		h, err := textproto.ReadHeader(br)
		if h.Len() > 0 {
			addDSNBlock(h, b)
		}
		if err != nil {
			// A malformed line: skip it and try the next block.
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
		}
	}
}

// splitBlock cuts a block that names several recipients without the
// blank lines between them (AOL) into one block per recipient: a new one
// starts at each Original-Recipient or Final-Recipient once the current
// one has a Final-Recipient.
func splitBlock(h textproto.Header) []textproto.Header {
	if len(h.Values("Final-Recipient")) < 2 {
		return []textproto.Header{h}
	}
	var out []textproto.Header
	var cur textproto.Header
	fields := h.Fields()
	for fields.Next() {
		key := strings.ToLower(fields.Key())
		if (key == "final-recipient" || key == "original-recipient") && cur.Has("Final-Recipient") {
			out = append(out, cur)
			cur = textproto.Header{}
		}
		cur.Add(fields.Key(), fields.Value())
	}
	return append(out, cur)
}

func addDSNBlock(h textproto.Header, b *builder) {
	if blocks := splitBlock(h); len(blocks) > 1 {
		for _, blk := range blocks {
			addDSNBlock(blk, b)
		}
		return
	}
	r := b.r
	if v := h.Get("Reporting-MTA"); v != "" && r.ReportingMTA == "" {
		r.ReportingMTA = stripType(v)
	}
	rcpt := extractAddr(stripType(h.Get("Final-Recipient")))
	if rcpt == "" {
		rcpt = extractAddr(stripType(h.Get("Original-Recipient")))
	}
	if rcpt == "" {
		return
	}
	st := Status{
		Recipient:  rcpt,
		Action:     strings.ToLower(firstWord(h.Get("Action"))),
		Status:     enhancedCode(h.Get("Status")),
		Diagnostic: clean(stripType(h.Get("Diagnostic-Code"))),
		RemoteMTA:  stripType(h.Get("Remote-MTA")),
	}
	if st.Status == "" {
		// Some MTAs leave Status empty or put "5.0.0 (permanent failure)"
		// oddly; the diagnostic often carries the real code.
		st.Status = enhancedCode(st.Diagnostic)
	}
	// RFC 3464 section 2.3.3: "failed" with a class 5 status is the only
	// combination that says retrying cannot help.
	st.Permanent = st.Action == "failed" && strings.HasPrefix(st.Status, "5.")
	// The Status field's comment is evidence too: PowerMTA writes
	// "5.2.1 (mailbox disabled, not accepting messages)".
	b.add(st, clean(h.Get("Status")))
}

// stripType removes an RFC 3464 type prefix: "rfc822; a@b" -> "a@b",
// "smtp; 550 ..." -> "550 ...", "dns; mx.example" -> "mx.example".
func stripType(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ';'); i >= 0 && i < 16 && !strings.ContainsAny(v[:i], " @<") {
		v = strings.TrimSpace(v[i+1:])
	}
	return v
}

func firstWord(v string) string {
	f := strings.Fields(v)
	if len(f) == 0 {
		return ""
	}
	return strings.Trim(f[0], "();,")
}

// enhancedRE matches an RFC 3463 code: class 2, 4 or 5; subject 0-7
// (section 3: "subject" sub-codes are defined up to 7), detail up to 3 digits.
// The look-arounds keep version numbers such as "8.14.4" or IP addresses out.
var enhancedRE = regexp.MustCompile(`(?:^|[^0-9.])([245]\.[0-7]\.[0-9]{1,3})(?:[^0-9.]|\.(?:[^0-9]|$)|$)`)

func enhancedCode(s string) string {
	m := enhancedRE.FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

var addrRE = regexp.MustCompile(`[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+`)

// extractAddr returns the first address-looking token of s, lower-cased
// domain, or "".
func extractAddr(s string) string {
	a := addrRE.FindString(s)
	if a == "" {
		return ""
	}
	a = strings.Trim(a, ".")
	at := strings.LastIndexByte(a, '@')
	return a[:at] + strings.ToLower(a[at:])
}

// clean drops control characters (a stray "=00" in quoted-printable decodes
// to NUL) and bounds the length of text copied from a report.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 1000 {
		s = strings.ToValidUTF8(s[:1000], "")
	}
	return s
}
