package console

import (
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // the charsets of RFC 2046 text parts beyond UTF-8

	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/tenant"
)

// The captured copy of a message: in capture mode (delivery.mode:
// capture) Heed keeps each recipient's copy, rendered, signed and as it
// would have been sent, instead of delivering it. The page shows its
// header fields and its text, every byte escaped by html/template; an
// HTML part is shown as its source, as text, never rendered: a copy's
// HTML is the tenant's app's, and rendering it in the console's origin
// would let a script or a form of it act as the signed-in user, a
// remote image tell its sender who looked.

// maxPartShown is the most of one part the page shows: a copy is for
// reading, and a 25 MB attachment is not.
const maxPartShown = 1 << 20

type capturedPart struct {
	// Type is the part's media type ("text/plain").
	Type     string
	Filename string
	// Text is the decoded body of a text part (and the source of an
	// HTML one); Size the bytes of any other part.
	Text      string
	Size      int64
	Truncated bool
}

type capturedData struct {
	Tenant   tenant.Tenant
	Captured outbound.Captured
	Header   [][2]string
	Parts    []capturedPart
}

// capturedPage is GET …/messages/{id}/captured/{index}: the copy of the
// message to the recipient at index. Another tenant's copy answers as a
// missing one.
func (s *server) capturedPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	if s.Captures == nil {
		s.fail(w, r, http.StatusNotFound, "The relay is not in capture mode: its mail is delivered, not kept.")
		return
	}
	id := r.PathValue("id")
	idx, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || idx < 0 {
		s.fail(w, r, http.StatusNotFound, noCopy)
		return
	}
	all, err := s.Captures.List()
	if err != nil {
		s.internal(w, r, err)
		return
	}
	var c *outbound.Captured
	for i := range all {
		if all[i].MessageID == id && all[i].Recipient == idx && all[i].Tenant == t.ID {
			c = &all[i]
		}
	}
	if c == nil {
		s.fail(w, r, http.StatusNotFound, noCopy)
		return
	}
	rc, err := s.Captures.Open(c.ID)
	if errors.Is(err, fs.ErrNotExist) {
		s.fail(w, r, http.StatusNotFound, noCopy) // erased meanwhile
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer rc.Close()
	d := capturedData{Tenant: t, Captured: *c}
	if err := readCopy(rc, &d); err != nil {
		s.internal(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "captured", page{Title: "Captured copy to " + c.To, User: v, CSRF: v.sess.CSRF, Data: &d})
}

const noCopy = "No copy of that message to that recipient was captured."

// readCopy parses the message into d: its header fields, decoded (RFC
// 2047), and each leaf part, text decoded from its transfer encoding and
// charset (RFC 2045, RFC 2046).
func readCopy(r io.Reader, d *capturedData) error {
	m, err := message.Read(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return err
	}
	for f := m.Header.Fields(); f.Next(); {
		val, err := f.Text()
		if err != nil {
			val = f.Value()
		}
		d.Header = append(d.Header, [2]string{f.Key(), val})
	}
	return m.Walk(func(_ []int, e *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if e.MultipartReader() != nil {
			return nil
		}
		typ, params, _ := e.Header.ContentType()
		if typ == "" {
			typ = "text/plain"
		}
		p := capturedPart{Type: typ}
		if _, dp, err := mime.ParseMediaType(e.Header.Get("Content-Disposition")); err == nil {
			p.Filename = dp["filename"]
		}
		if p.Filename == "" {
			p.Filename = params["name"]
		}
		if strings.HasPrefix(typ, "text/") && p.Filename == "" {
			b, err := io.ReadAll(io.LimitReader(e.Body, maxPartShown+1))
			if err != nil {
				return err
			}
			p.Truncated = len(b) > maxPartShown
			p.Text = strings.ToValidUTF8(string(b[:min(len(b), maxPartShown)]), "\uFFFD")
		} else {
			n, err := io.Copy(io.Discard, e.Body)
			if err != nil {
				return err
			}
			p.Size = n
		}
		d.Parts = append(d.Parts, p)
		return nil
	})
}
