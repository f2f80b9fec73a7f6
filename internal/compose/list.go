package compose

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/mail"
)

// validate refuses list input that would make a wrong or unsafe header:
// these are the caller's mistakes, not the app's, so they do not wrap
// ErrMalformed.
func (in *Input) validate() error {
	switch in.Kind {
	case "":
		return nil
	case kindMarketing, kindTransactional:
	default:
		return fmt.Errorf("compose: unknown list kind %q", in.Kind)
	}
	// The ids are joined with "." in List-Id and ":" in Feedback-ID.
	if !isID(in.Tenant) || !isID(in.List) {
		return fmt.Errorf("compose: tenant %q or list %q is not an id of [a-z0-9_-]", in.Tenant, in.List)
	}
	if in.Kind == kindMarketing {
		// CAN-SPAM: an opt-out and a postal address in every message.
		if !in.Unsubscribe || in.UnsubscribeURL == "" {
			return fmt.Errorf("compose: marketing mail needs List-Unsubscribe and an unsubscribe URL")
		}
		if strings.TrimSpace(in.PostalAddress) == "" {
			return fmt.Errorf("compose: marketing mail needs the sender's postal address")
		}
	}
	if in.UnsubscribeURL != "" && !uriSafe(in.UnsubscribeURL, "") {
		return fmt.Errorf("compose: unsubscribe URL %q has characters a URI cannot hold", in.UnsubscribeURL)
	}
	if m := in.UnsubscribeMailto; m != "" {
		at := strings.LastIndexByte(m, '@')
		if at <= 0 || at == len(m)-1 || !uriSafe(m, "?#%/") {
			return fmt.Errorf("compose: unsubscribe mailto address %q is not local@domain", m)
		}
		if at > 64 { // RFC 5321 section 4.5.3.1.1
			return fmt.Errorf("compose: unsubscribe mailto local part %q is longer than 64 octets", m[:at])
		}
	}
	if in.Unsubscribe && in.UnsubscribeURL == "" && in.UnsubscribeMailto == "" {
		return fmt.Errorf("compose: List-Unsubscribe needs an unsubscribe URL or mailto address")
	}
	return nil
}

func isID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// uriSafe reports whether s holds only characters a URI may hold
// (RFC 3986), none of them in also.
func uriSafe(s, also string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>"\^{|}`+"`", c) >= 0 || strings.IndexByte(also, c) >= 0 {
			return false
		}
	}
	return true
}

// appendListFields appends List-Id, List-Unsubscribe,
// List-Unsubscribe-Post and Feedback-ID to top.
func appendListFields(top [][]byte, in *Input) ([][]byte, error) {
	// RFC 2919: List-Id: [phrase] <list-label.list-id-namespace>, the
	// namespace a domain Heed holds.
	id := "<" + in.List + "." + in.Tenant + "." + in.Hostname + ">"
	if in.ListName != "" {
		id = phrase(in.ListName) + " " + id
	}
	f, err := formatField("List-Id", id)
	if err != nil {
		return nil, err
	}
	top = append(top, f)
	if in.Unsubscribe {
		var uris []string
		if in.UnsubscribeURL != "" {
			uris = append(uris, "<"+in.UnsubscribeURL+">")
		}
		if in.UnsubscribeMailto != "" {
			uris = append(uris, "<mailto:"+in.UnsubscribeMailto+"?subject=unsubscribe>")
		}
		f, err := foldList("List-Unsubscribe", uris)
		if err != nil {
			return nil, err
		}
		top = append(top, f)
		// RFC 8058 section 3.1: only with an HTTPS URI to POST to.
		if len(in.UnsubscribeURL) > len("https://") && strings.EqualFold(in.UnsubscribeURL[:len("https://")], "https://") {
			top = append(top, []byte("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"))
		}
	}
	// Gmail's feedback loop: identifiers first, the sender id last, no
	// colon inside any (isID guarantees it for ours).
	top = append(top, []byte("Feedback-ID: "+in.List+":"+in.Tenant+":"+in.Kind+":heed\r\n"))
	return top, nil
}

// phrase formats a list name as an RFC 5322 phrase: quoted when it is
// printable ASCII, an RFC 2047 encoded-word otherwise (base64 when the
// name holds characters a Q-encoded word in a phrase may not, RFC 2047
// section 5(3)). net/mail's address formatter makes exactly that choice,
// so it does the work: only the angle-addr it needs is cut off.
func phrase(name string) string {
	const addr = " <x@x>"
	a := mail.Address{Name: name, Address: "x@x"}
	return strings.TrimSuffix(a.String(), addr)
}

// foldList formats a field whose value is a comma-separated list of
// angle-bracketed URIs (RFC 2369), folding only after a comma: a URI is
// never split (go-message would split a word that does not fit, inserting
// a space into the URI). Lines stay under 78 octets where the URIs allow
// and must stay within 998 (RFC 5322 section 2.1.1).
func foldList(key string, items []string) ([]byte, error) {
	var b strings.Builder
	b.WriteString(key)
	b.WriteString(": ")
	line := b.Len()
	for i, it := range items {
		if i > 0 {
			if line+2+len(it) > 76 {
				b.WriteString(",\r\n ")
				line = 1
			} else {
				b.WriteString(", ")
				line += 2
			}
		}
		b.WriteString(it)
		line += len(it)
		if line+1 > 998 { // the comma or CR
			return nil, fmt.Errorf("compose: %s URI %.40q... is too long for a header line", key, it)
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String()), nil
}
