package outbound

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Result is the outcome of one delivery attempt.
type Result struct {
	// Code is the SMTP reply code: 2xx delivered, 4xx temporary, 5xx
	// permanent. Local failures use 4xx and 5xx too.
	Code int
	// Enhanced is the RFC 3463 status code, e.g. "5.1.1"; "" if none.
	Enhanced string
	// Text is the remote reply text, or the local reason.
	Text string
	// Host is the next hop that answered (host:port); "" if no hop answered
	// or the message was captured.
	Host string
}

// Delivered reports whether the next hop (or the capture directory) took
// responsibility for the message.
func (r Result) Delivered() bool { return r.Code/100 == 2 }

// Permanent reports whether the failure is permanent: the message must
// bounce rather than be retried.
func (r Result) Permanent() bool { return r.Code/100 == 5 }

// String formats the result as a reply line, "550 5.1.1 text".
func (r Result) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if r.Text != "" {
		b.WriteByte(' ')
		b.WriteString(r.Text)
	}
	return b.String()
}

func temporary(enhanced, format string, args ...any) Result {
	return Result{Code: 451, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

func permanent(code int, enhanced, format string, args ...any) Result {
	return Result{Code: code, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

// fromReply turns a remote reply into a Result. Multi-line replies are
// joined into one line so the text fits a log line and a DSN field.
func fromReply(se *smtp.SMTPError, host string) Result {
	r := Result{Code: se.Code, Text: oneLine(se.Message), Host: host}
	if c := se.EnhancedCode; c != smtp.EnhancedCodeNotSet && c != smtp.NoEnhancedCode {
		r.Enhanced = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
	}
	return r
}

// fromSuccess builds the Result of a 250 reply whose text go-smtp returns
// unparsed, enhanced code included.
func fromSuccess(text, host string) Result { return fromText(250, text, host) }

// fromText builds the Result of a reply read as net/textproto returns it:
// lines joined by "\n", each still starting with the enhanced code when
// the server sends one (RFC 2034 puts it on every line).
func fromText(code int, text, host string) Result {
	r := Result{Code: code, Host: host}
	first, _, _ := strings.Cut(text, "\n")
	if enh, _, _ := strings.Cut(first, " "); isEnhancedCode(enh) {
		r.Enhanced = enh
		text = strings.TrimPrefix(text, enh)
		text = strings.ReplaceAll(text, "\n"+enh+" ", "\n")
	}
	r.Text = oneLine(text)
	return r
}

func isEnhancedCode(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
