// Package unread keeps, for the operator, the reports to the return path
// that Heed could not read or chose not to act on
// (data_dir/reports/unread): one file ID.eml with the start of the report
// as received, and beside it ID.json, the Report record saying why it was
// kept and how it arrived. The inbound listener (smtpd) writes them; the
// admin API lists, downloads and deletes them; the retention job purges
// them. Both listeners import this package, not each other.
//
// The feedback-loop addresses (fbl@, abuse@ the return-path domain) need
// no MAC, so anyone can send to them, and what cannot be read is kept. The
// folder is therefore bounded three ways: each file keeps only the start
// of its report, the folder holds at most MaxFiles reports and MaxBytes
// bytes (both files of each), and reports older than Retention are purged.
// When a new report would pass a bound, the oldest are deleted to make
// room: the newest reports are the ones an operator is looking for, and a
// flood must not turn real reports away once the folder is full.
//
// Crash safety: the record is written (and fsynced) before the report, so
// a report file always has its record unless it was copied in by hand or
// kept by a Heed that wrote none; a record without its report is the
// remains of a write that got no 250 (the sender retries), and Purge
// removes it with any temporary file a crash left.
package unread

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/ids"
)

// Reason says why a report was kept rather than acted on.
type Reason string

// The reasons, as the admin API and the records spell them.
const (
	// Unparsable: not a report Heed can read; Detail is the parse error.
	Unparsable Reason = "unparsable"
	// UnknownMessage: a report Heed can read that names no message Heed
	// knows (a feedback-loop report about someone else's mail, or about a
	// message whose record is gone).
	UnknownMessage Reason = "unknown-message"
	// Feedback: an ARF report that is not a complaint (auth-failure, RFC
	// 6591; not-spam, RFC 6430; virus, RFC 5965 section 7.3; or a type no
	// RFC registers); FeedbackType says which.
	Feedback Reason = "feedback"
	// NotActionable: a delivery report that names no recipient, or whose
	// every recipient's failure has no reason Heed can tell
	// (report.Undetermined): it changes nothing and needs a human eye.
	NotActionable Reason = "not-actionable"
	// Unrecorded: a report file without its record (kept by a Heed that
	// wrote none, or copied in by hand).
	Unrecorded Reason = "unrecorded"
)

// Report is the record of one kept report.
type Report struct {
	// ID names the files (ID.eml, ID.json); an ids.New id made when the
	// report was kept.
	ID string `json:"id"`
	// ReceivedAt is when the report was kept, by the listener's clock;
	// retention counts from it.
	ReceivedAt time.Time `json:"received_at"`
	Reason     Reason    `json:"reason"`
	// Detail says more, in words: the parse error, the feedback type.
	Detail string `json:"detail,omitempty"`
	// Kind is what the report was read as (report.Kind), "" when it could
	// not be read.
	Kind         string `json:"kind,omitempty"`
	FeedbackType string `json:"feedback_type,omitempty"`
	// Tenant and MessageID name the message the report is about, when
	// Heed knows it.
	Tenant    string `json:"tenant,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	// Client is the address of the SMTP client that sent the report.
	Client string `json:"client,omitempty"`
	// MailFrom is the envelope sender ("" for the null sender of reports).
	MailFrom string `json:"mail_from"`
	// Recipients are the return-path addresses it was sent to (at most
	// maxRecipients of them).
	Recipients []string `json:"recipients,omitempty"`
	// Size is the size of the report as received; Truncated says the file
	// keeps only its start (smtp.inbound.unread_report_keep_bytes).
	Size      int64 `json:"size"`
	Truncated bool  `json:"truncated"`
}

// Limits on a record: it is written for every report, so a client must
// not make it large.
const (
	maxRecipients = 20
	maxText       = 1000
)

// ErrNotFound is returned for an id that names no kept report, including
// every string that is not an id at all.
var ErrNotFound = errors.New("unread: no such report")

// Options configure a Store; zero values take the defaults in brackets.
type Options struct {
	// Dir is data_dir/reports/unread.
	Dir string
	// MaxFiles and MaxBytes bound Dir: a report that would pass either
	// makes the oldest be deleted first (1000 reports, 100 MiB).
	MaxFiles int
	MaxBytes int64
	// KeepBytes is how much of one report is kept, the header and first
	// lines (256 KiB; at most MaxBytes).
	KeepBytes int64
	// Retention is how old a report Purge deletes (30 days).
	Retention time.Duration
	// Now is the clock of the names, records and retention (time.Now).
	Now func() time.Time
	// Kept, when set, is called after each report is on disk (a metric).
	Kept   func(Report)
	Logger *slog.Logger
}

// Store is the folder of kept reports. It is safe for concurrent use;
// one relay process owns its folder.
type Store struct {
	o Options
	// mu makes each make-room-and-write step atomic: two sessions keeping
	// reports at once must not both count the room that is left, and a
	// purge must not take a write in progress for a crash's remains.
	mu sync.Mutex
	// last is the time in the newest id handed out, so that ids sort in
	// the order the reports came even within one millisecond (ids order
	// by millisecond only).
	last time.Time
}

// New returns the store of o, with the defaults filled in.
func New(o Options) *Store {
	if o.MaxFiles <= 0 {
		o.MaxFiles = 1000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 100 << 20
	}
	if o.KeepBytes <= 0 {
		o.KeepBytes = 256 << 10
	}
	o.KeepBytes = min(o.KeepBytes, o.MaxBytes) // one report always fits
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Store{o: o}
}

// Dir is the folder the store keeps its files in.
func (s *Store) Dir() string { return s.o.Dir }

// ValidID reports whether id is spelled as the store names reports: an
// ids.New id, lower-case base32. Only such ids are ever joined into a
// path, so no request can name a file outside the folder.
func ValidID(id string) bool {
	_, ok := ids.Time(id)
	return ok && lowerAlnum(id)
}

func lowerAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// newID returns a new id whose time is the clock's now, or a millisecond
// after the previous id's when the clock has not moved on, so that
// sorting ids is sorting by arrival. A clock stepped back by more than a
// second is followed: after one step forward, ids must not stay in the
// future for the rest of the process.
func (s *Store) newID(now time.Time) string {
	t := now.Truncate(time.Millisecond)
	if !t.After(s.last) && s.last.Sub(t) < time.Second {
		t = s.last.Add(time.Millisecond)
	}
	s.last = t
	return ids.New(t)
}

// clip shortens text written into a record from outside input.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:maxText], len(s))
}
