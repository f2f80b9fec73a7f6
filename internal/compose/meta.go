package compose

import "strings"

// metaWindow is how much of an HTML document is searched for a <meta> tag
// naming its charset: a browser prescans the first 1,024 bytes (HTML
// Living Standard, "prescan a byte stream to determine its encoding").
const metaWindow = 1024

// metaCharsetUTF8 returns the HTML document text, which is now UTF-8, with
// the charset named by each <meta> tag in its first 1,024 bytes set to
// utf-8: a <meta charset=...> tag's attribute, or the charset in the
// content of a <meta http-equiv="Content-Type"> tag. A part re-encoded
// from another charset would otherwise name the old one to a reader that
// believes the tag. Letter case does not matter; a tag that does not end
// within the window is left alone.
func metaCharsetUTF8(text string) string {
	w := text[:min(len(text), metaWindow)]
	var b strings.Builder
	at := 0 // text[:at] is in b
	replace := func(start, end int) {
		if start == end || strings.EqualFold(w[start:end], "utf-8") {
			return
		}
		if at == 0 {
			b.Grow(len(text) + 8)
		}
		b.WriteString(text[at:start])
		b.WriteString("utf-8")
		at = end
	}
	for i := 0; ; {
		j := indexLower(w[i:], "<meta")
		if j < 0 {
			break
		}
		i += j + len("<meta")
		if i == len(w) || !isHTMLSpace(w[i]) && w[i] != '/' {
			continue // <metadata>, say
		}
		attrs, end := metaAttrs(w, i)
		if end < 0 {
			break
		}
		i = end
		// The first attribute of a name counts, as in an HTML parser; a
		// value's offsets are never 0, so 0 is none.
		var charset, equiv, content [2]int
		for _, a := range attrs {
			switch name := w[a.name[0]:a.name[1]]; {
			case strings.EqualFold(name, "charset") && charset[0] == 0:
				charset = a.value
			case strings.EqualFold(name, "http-equiv") && equiv[0] == 0:
				equiv = a.value
			case strings.EqualFold(name, "content") && content[0] == 0:
				content = a.value
			}
		}
		httpEquiv := strings.EqualFold(strings.TrimSpace(w[equiv[0]:equiv[1]]), "content-type")
		if charset[0] == 0 && httpEquiv {
			// A charset attribute wins over http-equiv.
			if s, e := contentCharset(w, content[0], content[1]); s >= 0 {
				charset = [2]int{s, e}
			}
		}
		if charset[0] != 0 {
			replace(charset[0], charset[1])
		}
	}
	if at == 0 {
		return text
	}
	b.WriteString(text[at:])
	return b.String()
}

// attr is an attribute of a tag: the offsets of its name and value.
type attr struct{ name, value [2]int }

// metaAttrs reads the attributes of the tag whose name ends at i in w, as
// an HTML tokenizer does, and returns them with the offset just past the
// '>' that ends the tag, or -1 when w ends first.
func metaAttrs(w string, i int) ([]attr, int) {
	var attrs []attr
	for {
		for i < len(w) && (isHTMLSpace(w[i]) || w[i] == '/') {
			i++
		}
		if i == len(w) {
			return nil, -1
		}
		if w[i] == '>' {
			return attrs, i + 1
		}
		var a attr
		a.name[0] = i
		for i++; i < len(w) && !isHTMLSpace(w[i]) && !strings.ContainsRune("/>=", rune(w[i])); i++ {
		}
		a.name[1] = i
		for i < len(w) && isHTMLSpace(w[i]) {
			i++
		}
		a.value = [2]int{i, i}
		if i < len(w) && w[i] == '=' {
			for i++; i < len(w) && isHTMLSpace(w[i]); i++ {
			}
			if i == len(w) {
				return nil, -1
			}
			if q := w[i]; q == '"' || q == '\'' {
				e := strings.IndexByte(w[i+1:], q)
				if e < 0 {
					return nil, -1
				}
				a.value = [2]int{i + 1, i + 1 + e}
				i += e + 2
			} else {
				a.value[0] = i
				for i < len(w) && !isHTMLSpace(w[i]) && w[i] != '>' {
					i++
				}
				a.value[1] = i
			}
		}
		attrs = append(attrs, a)
	}
}

// contentCharset finds the charset in the content attribute w[s:e] of a
// <meta http-equiv="Content-Type"> tag (HTML Living Standard, "algorithm
// for extracting a character encoding from a meta element"), and returns
// its offsets, or -1.
func contentCharset(w string, s, e int) (int, int) {
	for s < e {
		j := indexLower(w[s:e], "charset")
		if j < 0 {
			return -1, -1
		}
		s += j + len("charset")
		for s < e && isHTMLSpace(w[s]) {
			s++
		}
		if s == e || w[s] != '=' {
			continue
		}
		for s++; s < e && isHTMLSpace(w[s]); s++ {
		}
		if s == e {
			return -1, -1
		}
		if q := w[s]; q == '"' || q == '\'' {
			k := strings.IndexByte(w[s+1:e], q)
			if k < 0 {
				return -1, -1
			}
			return s + 1, s + 1 + k
		}
		k := s
		for k < e && !isHTMLSpace(w[k]) && w[k] != ';' {
			k++
		}
		return s, k
	}
	return -1, -1
}

// indexLower is strings.Index with ASCII letters in s matched in any case;
// sub is in lower case.
func indexLower(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && lowerASCII(s[i+j]) == sub[j] {
			j++
		}
		if j == len(sub) {
			return i
		}
	}
	return -1
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isHTMLSpace reports whether c is ASCII whitespace as HTML has it.
func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}
