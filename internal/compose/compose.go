package compose

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
)

var (
	// ErrMalformed is wrapped by the errors of a message that can never be
	// composed: its header cannot be parsed, or it is marketing mail whose
	// body Heed must change but cannot read. The error text says which part
	// and why, for the bounce (554 5.6.0) or the SMTP reply.
	ErrMalformed = errors.New("malformed message")
	// ErrSign is wrapped by the errors of Input.Signer. The message must not
	// go out unsigned: callers retry later.
	ErrSign = errors.New("signing failed")
)

// List kinds (Input.Kind).
const (
	kindMarketing     = "marketing"
	kindTransactional = "transactional"
)

// Signer signs a rendered message.
type Signer interface {
	// Sign returns the DKIM-Signature header fields for msg, each ending in
	// CRLF, to be put on top of it.
	Sign(msg []byte) (string, error)
}

// Input is what rendering needs to know about the message and the copy.
// The fields after Recipient left zero mean no list treatment and no
// signing; the header fields Heed owns are removed all the same.
type Input struct {
	// MessageID is Heed's id of the message, used in the trace field and
	// for a Message-ID Heed has to create.
	MessageID string
	// Hostname is Heed's name.
	Hostname   string
	ReceivedAt time.Time
	// Helo, ClientAddr, TLS and Auth describe the submitting session.
	Helo       string
	ClientAddr string
	TLS, Auth  bool
	// Recipient is the address this copy goes to.
	Recipient string

	// Tenant and List are the ids ([a-z0-9_-]+) of the tenant and the list
	// the message goes out on; ListName is the list's display name.
	Tenant   string
	List     string
	ListName string
	// Kind is "marketing" or "transactional"; "" means no list treatment
	// (legacy callers).
	Kind string
	// Unsubscribe adds List-Unsubscribe (and List-Unsubscribe-Post when
	// UnsubscribeURL is HTTPS): true for marketing lists and for
	// transactional lists with unsubscribe:true.
	Unsubscribe bool
	// UnsubscribeURL is the one-click URL, https://BASE/u/TOKEN, built by
	// the caller; it also replaces {{heed_unsubscribe_url}} ("" when the
	// list has no opt-out).
	UnsubscribeURL string
	// UnsubscribeMailto is local@mailto_domain, built by the caller; ""
	// leaves the mailto URI out.
	UnsubscribeMailto string
	// PostalAddress is the tenant's postal address; it may hold newlines.
	PostalAddress string
	// Signer, when not nil, signs the rendered message; its error aborts
	// Render with ErrSign.
	Signer Signer
}

// Header is a parsed header with the body that follows it.
type Header = textproto.Header

// splitReaders reuses Split's read buffers: every delivery attempt splits
// its message, and a fresh 4 KiB buffer each time showed in the profile.
var splitReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// Split parses the header of a message and returns it with the rest.
func Split(msg []byte) (Header, []byte, error) {
	r := bytes.NewReader(msg)
	br := splitReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil)
		splitReaders.Put(br)
	}()
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return h, nil, malformed("header", "%v", err)
	}
	// ReadHeader reads ahead: what it consumed is what left r minus what
	// still sits in br's buffer.
	consumed := len(msg) - r.Len() - br.Buffered()
	return h, msg[consumed:], nil
}

// Render writes the message as it is sent to in.Recipient.
func Render(w io.Writer, msg []byte, in Input) error {
	if err := in.validate(); err != nil {
		return err
	}
	h, body, err := Split(msg)
	if err != nil {
		return err
	}
	removeOwned(&h)
	pieces, set, err := composeBody(&h, body, &in)
	if err != nil {
		return err
	}
	top, err := topFields(&h, &in)
	if err != nil {
		return err
	}
	if in.Signer == nil {
		return writeMessage(w, top, &h, set, pieces)
	}
	var buf bytes.Buffer
	buf.Grow(len(msg) + 4096)
	if err := writeMessage(&buf, top, &h, set, pieces); err != nil {
		return err
	}
	sig, err := in.Signer.Sign(buf.Bytes())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSign, err)
	}
	if sig != "" && !strings.HasSuffix(sig, "\r\n") {
		return fmt.Errorf("%w: the signature %.40q does not end in CRLF", ErrSign, sig)
	}
	if _, err := io.WriteString(w, sig); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// owned are the header fields Heed writes itself, besides X-Heed-*.
var owned = [...]string{"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Feedback-ID", "DKIM-Signature"}

// removeOwned deletes the fields Heed owns from the app's header.
func removeOwned(h *textproto.Header) {
	for f := h.Fields(); f.Next(); {
		if isOwned(f.Key()) {
			f.Del()
		}
	}
}

func isOwned(key string) bool {
	if len(key) >= len("X-Heed-") && strings.EqualFold(key[:len("X-Heed-")], "X-Heed-") {
		return true
	}
	for _, k := range owned {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// topFields are the fields put above the app's: the trace field first
// (RFC 5321 section 4.4), the list fields, then Message-ID and Date when
// the app left them out.
func topFields(h *textproto.Header, in *Input) ([][]byte, error) {
	top := make([][]byte, 0, 7)
	f, err := formatField("Received", received(in))
	if err != nil {
		return nil, err
	}
	top = append(top, f)
	if in.Kind != "" {
		if top, err = appendListFields(top, in); err != nil {
			return nil, err
		}
	}
	if !h.Has("Message-Id") {
		f, err := formatField("Message-ID", "<"+in.MessageID+"@"+in.Hostname+">")
		if err != nil {
			return nil, err
		}
		top = append(top, f)
	}
	if !h.Has("Date") {
		top = append(top, []byte("Date: "+in.ReceivedAt.Format(time.RFC1123Z)+"\r\n"))
	}
	return top, nil
}

// received is the trace field. It names the submitting client as the
// session saw it, as Postfix and every other MTA do.
func received(in *Input) string {
	with := "ESMTP"
	if in.TLS {
		with += "S"
	}
	if in.Auth {
		with += "A"
	}
	from := in.Helo
	if from == "" {
		from = "unknown"
	}
	return fmt.Sprintf("from %s (%s) by %s (Heed) with %s id %s for <%s>; %s",
		from, in.ClientAddr, in.Hostname, with, in.MessageID, in.Recipient,
		in.ReceivedAt.Format(time.RFC1123Z))
}

// field is a header field Heed sets in place of the app's.
type field struct{ key, value string }

// formatField formats a field, folded by go-message (at whitespace, lines
// kept under 78 octets where the words allow), with key spelt as given
// rather than in Go's canonical form (Message-ID, not Message-Id).
func formatField(key, value string) ([]byte, error) {
	var h textproto.Header
	h.Add(key, value)
	raw, err := h.Raw(key)
	if err != nil {
		return nil, fmt.Errorf("compose: %s field: %w", key, err)
	}
	copy(raw, key) // same length: only the letter case differs
	return raw, nil
}

// writeMessage writes top, then h's fields in their order with those
// named in set replaced where they first occur (any later ones dropped)
// and the rest of set appended, then the pieces of the body.
func writeMessage(w io.Writer, top [][]byte, h *textproto.Header, set []field, body [][]byte) error {
	ew := errWriter{w: w}
	for _, f := range top {
		ew.write(f)
	}
	if err := writeHeader(&ew, h, set); err != nil {
		return err
	}
	for _, b := range body {
		ew.write(b)
	}
	return ew.err
}

// writeHeader writes h with set applied (see writeMessage) and the blank
// line that ends it.
func writeHeader(w *errWriter, h *textproto.Header, set []field) error {
	var done uint8 // bit i: set[i] written; set is never longer than 3
	for f := h.Fields(); f.Next(); {
		if i := fieldIndex(set, f.Key()); i >= 0 {
			if done&(1<<i) == 0 {
				if err := w.writeField(set[i]); err != nil {
					return err
				}
				done |= 1 << i
			}
			continue
		}
		raw, err := f.Raw()
		if err != nil {
			return fmt.Errorf("compose: %w", err)
		}
		w.write(raw)
	}
	for i := range set {
		if done&(1<<i) == 0 {
			if err := w.writeField(set[i]); err != nil {
				return err
			}
		}
	}
	w.write(crlf)
	return nil
}

func fieldIndex(set []field, key string) int {
	for i := range set {
		if strings.EqualFold(set[i].key, key) {
			return i
		}
	}
	return -1
}

var crlf = []byte("\r\n")

// errWriter keeps the first write error, so a run of writes is checked
// once.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) write(b []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(b)
	}
}

func (w *errWriter) writeField(f field) error {
	raw, err := formatField(f.key, f.value)
	if err != nil {
		return err
	}
	w.write(raw)
	return nil
}
