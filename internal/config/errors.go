package config

import (
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem found in a configuration, located as precisely as the
// file allows: Line is 0 when the key is not in the file (a default, a
// derived value or the environment), and File is empty for values that did
// not come from a file at all.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

// Error formats e as "file:line: key: message", the shape editors and
// compilers use, so an operator can jump to the line.
func (e Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, so that an operator
// fixes them in one pass rather than one run per mistake. Functions of this
// package never return an empty Errors as a non-nil error.
type Errors []Error

// Error lists the errors one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// keyPath renders a path of YAML keys for messages: segments joined by dots,
// sequence indexes as [i], and keys that hold dots (route domains) quoted.
func keyPath(path []string) string {
	var b strings.Builder
	for i, seg := range path {
		switch {
		case strings.HasPrefix(seg, "["):
			b.WriteString(seg)
		case strings.Contains(seg, "."):
			b.WriteString("[" + strconv.Quote(seg) + "]")
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(seg)
		}
	}
	return b.String()
}

// lineOf returns the line of the deepest key of path present in the
// document, so a missing key is reported at its parent; 0 when not even the
// first key is in the file.
func lineOf(doc *yaml.Node, path []string) int {
	n := doc
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	line := 0
	for _, seg := range path {
		next, at := child(n, seg)
		if next == nil {
			break
		}
		n, line = next, at
	}
	return line
}

// child finds seg in a mapping (by key) or a sequence (by "[i]") and returns
// the value node and the line to report it at.
func child(n *yaml.Node, seg string) (*yaml.Node, int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case yaml.SequenceNode:
		idx, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(seg, "["), "]"))
		if err == nil && idx >= 0 && idx < len(n.Content) {
			return n.Content[idx], n.Content[idx].Line
		}
	}
	return nil, 0
}

// pathAt finds the key path of the key or value that starts on line, for
// decoder errors that only carry a line. want, when set, is the key name the
// decoder complained about.
func pathAt(doc *yaml.Node, line int, want string) []string {
	var walk func(n *yaml.Node, path []string) []string
	walk = func(n *yaml.Node, path []string) []string {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p := walk(c, path); p != nil {
					return p
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(append([]string(nil), path...), k.Value)
				if r := walk(v, p); r != nil {
					return r // the deepest key on the line is the culprit
				}
				if k.Line == line && (want == "" || k.Value == want) {
					return p
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := append(append([]string(nil), path...), "["+strconv.Itoa(i)+"]")
				if r := walk(c, p); r != nil {
					return r
				}
				if want == "" && c.Line == line {
					return p
				}
			}
		}
		return nil
	}
	if doc == nil {
		return nil
	}
	return walk(doc, nil)
}

var (
	reLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	reUnknown  = regexp.MustCompile(`^field (\S+) not found in type `)
	reDup      = regexp.MustCompile(`^mapping key "(.*)" already defined at (line \d+)$`)
	reTypeMiss = regexp.MustCompile("^cannot unmarshal (\\S+)(?: `.*`)? into (.+)$")
)

// decodeErrors turns what the YAML decoder returned into located Errors: a
// syntax error keeps the parser's message; each type error (unknown key,
// wrong type, duplicate key) gets its line and, when found, its key path.
func decodeErrors(file string, doc *yaml.Node, err error) Errors {
	te, ok := err.(*yaml.TypeError)
	if !ok {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := reLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return Errors{{File: file, Line: line, Msg: m[2]}}
		}
		return Errors{{File: file, Msg: msg}}
	}
	var errs Errors
	for _, s := range te.Errors {
		e := Error{File: file, Msg: s}
		if m := reLine.FindStringSubmatch(s); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		e.Key, e.Msg = explainTypeError(doc, e.Line, e.Msg)
		errs = append(errs, e)
	}
	return errs
}

// explainTypeError rewrites yaml.v3's Go-flavoured messages ("field x not
// found in type config.SMTP") in the operator's terms.
func explainTypeError(doc *yaml.Node, line int, msg string) (key, out string) {
	if m := reUnknown.FindStringSubmatch(msg); m != nil {
		return keyPath(pathAt(doc, line, m[1])), "unknown key"
	}
	if m := reDup.FindStringSubmatch(msg); m != nil {
		return keyPath(pathAt(doc, line, m[1])), "already set at " + m[2]
	}
	m := reTypeMiss.FindStringSubmatch(msg)
	if m == nil {
		return "", msg
	}
	path := pathAt(doc, line, "")
	var got string
	if n := nodeAt(doc, path); n != nil && n.Kind == yaml.ScalarNode {
		got = " (got " + strconv.Quote(n.Value) + ")"
	} else {
		got = " (got " + strings.TrimPrefix(m[1], "!!") + ")"
	}
	return keyPath(path), "must be " + typeName(m[2]) + got
}

// nodeAt returns the value node at path, or nil.
func nodeAt(doc *yaml.Node, path []string) *yaml.Node {
	if doc == nil {
		return nil
	}
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, seg := range path {
		if n, _ = child(n, seg); n == nil {
			return nil
		}
	}
	return n
}

// typeName names a Go type the way the configuration reference does.
func typeName(goType string) string {
	switch goType {
	case "time.Duration":
		return "a duration such as 30s, 5m or 120h"
	case "int", "int64":
		return "a whole number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "map[string]string":
		return "a mapping of strings to strings"
	}
	return "a mapping of keys"
}
