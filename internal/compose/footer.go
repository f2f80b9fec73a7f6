package compose

import (
	"html"
	"strings"
)

// The placeholders an app may put in any text or HTML part (contract.md,
// "Sending mail").
const (
	placeholderPrefix = "{{heed_"
	urlPlaceholder    = "{{heed_unsubscribe_url}}"
	addrPlaceholder   = "{{heed_postal_address}}"
)

// filler fills in the placeholders of one copy and writes its footers.
type filler struct {
	marketing bool
	url       string // "" when the list has no opt-out
	addr      []string
	text      *strings.Replacer // made on first use
	html      *strings.Replacer
	footerN   int // footerLen, once known
}

func newFiller(in *Input) *filler {
	f := &filler{marketing: in.Kind == kindMarketing}
	if in.Unsubscribe {
		f.url = in.UnsubscribeURL
	}
	a := strings.ReplaceAll(in.PostalAddress, "\r\n", "\n")
	for line := range strings.FieldsFuncSeq(a, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if line = strings.TrimSpace(line); line != "" {
			f.addr = append(f.addr, line)
		}
	}
	return f
}

// fill replaces the placeholders in text (LF line breaks) and, on
// marketing mail when footer is set, adds a footer with what text lacks.
// It reports whether text changed.
func (f *filler) fill(text string, isHTML, footer bool) (string, bool) {
	hasURL := strings.Contains(text, urlPlaceholder)
	hasAddr := strings.Contains(text, addrPlaceholder)
	if hasURL || hasAddr {
		text = f.replacer(isHTML).Replace(text)
	}
	footer = footer && f.marketing
	needURL, needAddr := footer && !hasURL, footer && !hasAddr
	switch {
	case !needURL && !needAddr:
		return text, hasURL || hasAddr
	case isHTML:
		return f.htmlFooter(text, needURL, needAddr), true
	default:
		return f.textFooter(text, needURL, needAddr), true
	}
}

func (f *filler) replacer(isHTML bool) *strings.Replacer {
	if isHTML {
		if f.html == nil {
			f.html = strings.NewReplacer(urlPlaceholder, html.EscapeString(f.url), addrPlaceholder, f.htmlAddress())
		}
		return f.html
	}
	if f.text == nil {
		f.text = strings.NewReplacer(urlPlaceholder, f.url, addrPlaceholder, strings.Join(f.addr, "\n"))
	}
	return f.text
}

// footerLen bounds the octets a footer adds to a text (LF line breaks),
// and so the length of each placeholder's value, which a footer holds.
func (f *filler) footerLen() int {
	if f.footerN == 0 {
		// The separating line breaks are the 2.
		f.footerN = 2 + max(len(f.htmlFooter("", true, true)), len(f.textFooter("", true, true)))
	}
	return f.footerN
}

// htmlAddress is the postal address escaped, its lines broken with <br>.
func (f *filler) htmlAddress() string {
	lines := make([]string, len(f.addr))
	for i, l := range f.addr {
		lines[i] = html.EscapeString(l)
	}
	return strings.Join(lines, "<br>")
}

// textFooter appends to text, after a blank line, the opt-out line and
// the postal address as asked. It is no "-- " signature block: readers
// fold those away, and the opt-out must be conspicuous.
func (f *filler) textFooter(text string, url, addr bool) string {
	var b strings.Builder
	b.Grow(len(text) + len(f.url) + 128)
	b.WriteString(text)
	if text != "" {
		if !strings.HasSuffix(text, "\n") {
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	if url {
		b.WriteString("Unsubscribe: ")
		b.WriteString(f.url)
		b.WriteByte('\n')
	}
	if addr {
		for _, l := range f.addr {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// htmlFooter inserts the footer just before the last </body>, or appends
// it to a document that has none.
func (f *filler) htmlFooter(text string, url, addr bool) string {
	var b strings.Builder
	b.Grow(len(text) + len(f.url) + 256)
	at := lastBodyClose(text)
	if at < 0 {
		at = len(text)
	}
	b.WriteString(text[:at])
	if at > 0 && text[at-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString(`<div style="margin-top:2em">` + "\n")
	if url {
		b.WriteString(`<p><a href="`)
		b.WriteString(html.EscapeString(f.url))
		b.WriteString(`">Unsubscribe</a></p>` + "\n")
	}
	if addr {
		b.WriteString("<p>")
		b.WriteString(f.htmlAddress())
		b.WriteString("</p>\n")
	}
	b.WriteString("</div>\n")
	b.WriteString(text[at:])
	return b.String()
}

// lastBodyClose finds the last </body> tag, in any letter case.
func lastBodyClose(s string) int {
	const tag = "</body"
	for i := strings.LastIndex(s, "</"); i >= 0; i = strings.LastIndex(s[:i], "</") {
		if len(s)-i >= len(tag) && strings.EqualFold(s[i:i+len(tag)], tag) {
			if j := i + len(tag); j == len(s) || strings.IndexByte(" \t\r\n>", s[j]) >= 0 {
				return i
			}
		}
	}
	return -1
}
