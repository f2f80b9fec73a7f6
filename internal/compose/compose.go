// Package compose renders a stored message for one recipient at delivery
// time: it removes the header fields Heed owns (X-Heed-*), adds the trace
// field (RFC 5321 section 4.4) and the Message-ID and Date fields RFC 5322
// section 3.6 requires when the app left them out. Everything else passes
// through byte for byte: unchanged header fields keep their raw bytes.
package compose

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// Input is what rendering needs to know about the message.
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
}

// Header is a parsed header with the body that follows it.
type Header = textproto.Header

// Split parses the header of a message and returns it with the rest.
func Split(msg []byte) (Header, []byte, error) {
	r := bytes.NewReader(msg)
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return h, nil, fmt.Errorf("malformed header: %w", err)
	}
	// ReadHeader reads ahead: what it consumed is what left r minus what
	// still sits in br's buffer.
	consumed := len(msg) - r.Len() - br.Buffered()
	return h, msg[consumed:], nil
}

// Render writes the message as it is sent to in.Recipient.
func Render(w io.Writer, msg []byte, in Input) error {
	h, body, err := Split(msg)
	if err != nil {
		return err
	}
	for f := h.Fields(); f.Next(); {
		if strings.HasPrefix(strings.ToLower(f.Key()), "x-heed-") {
			f.Del()
		}
	}
	if !h.Has("Date") {
		h.Add("Date", in.ReceivedAt.Format(time.RFC1123Z))
	}
	if !h.Has("Message-Id") {
		h.Add("Message-Id", "<"+in.MessageID+"@"+in.Hostname+">")
	}
	h.Add("Received", received(in))
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	_, err = w.Write(body)
	return err
}

// received is the trace field. It names the submitting client as the
// session saw it, as Postfix and every other MTA do.
func received(in Input) string {
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
