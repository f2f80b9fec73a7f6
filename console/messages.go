package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// MessageReader returns one message with its recipients' state, as the
// admin API's GET /api/v1/messages/{id} reads it; queue.Records
// satisfies it.
type MessageReader interface {
	Message(ctx context.Context, id string) (*queue.Message, error)
}

// The event log has no index by message or recipient, so both searches
// read it, and read a bounded number of events: a page never costs more
// than a few maxScan reads, whatever the tenant's volume.
const (
	// maxScan is the most events one window of a search reads.
	maxScan = 10000
	// maxFound is the most messages a search by recipient lists.
	maxFound = 50
)

// recipientWindows are the spans a search by recipient tries, widest
// first: the first whose events fit in maxScan is read whole, so the
// newest messages are never the ones left out.
var recipientWindows = []time.Duration{7 * 24 * time.Hour, 24 * time.Hour, time.Hour}

type messagesData struct {
	Tenant tenant.Tenant
	Query  string
	// Message is the message found by id, with each recipient's timeline.
	Message   *queue.Message
	Timelines []timeline
	NotFound  bool
	// Found are the messages to the address searched for, newest first.
	Address string
	Found   []foundMessage
	// Window is the span the search by recipient read; Partial says it
	// stopped at maxScan events before the end of even the shortest.
	Window  string
	Partial bool
	MaxScan int
	// Captures: the relay keeps captured copies (capture mode).
	Captures bool
}

// timeline is what happened to one recipient, oldest first.
type timeline struct {
	Recipient queue.Recipient
	Steps     []events.Event
	// Partial: the message's events were not all read (maxScan).
	Partial bool
}

type foundMessage struct {
	ID   string
	Time time.Time
	// Last is the latest event of the message for the address.
	Last events.Type
}

// messages finds a message by id, or the tenant's recent messages to an
// address. Another tenant's message answers as a missing one, exactly.
func (s *server) messages(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	d := messagesData{Tenant: t, MaxScan: maxScan, Query: strings.TrimSpace(r.URL.Query().Get("q")), Captures: s.Captures != nil}
	p := page{Title: "Messages: " + t.Name, User: v, CSRF: v.sess.CSRF, Data: &d}
	switch {
	case d.Query == "":
	case strings.Contains(d.Query, "@"):
		addr, err := suppression.Normalize(d.Query)
		if err != nil {
			p.Problem = "That is not an email address: " + err.Error()
			s.render(w, r, http.StatusBadRequest, "messages", p)
			return
		}
		d.Address = addr
		if err := s.toRecipient(r.Context(), t, &d); err != nil {
			s.internal(w, r, err)
			return
		}
	default:
		m, err := s.message(r.Context(), t, d.Query)
		if errors.Is(err, queue.ErrNotFound) {
			d.NotFound = true
			s.render(w, r, http.StatusNotFound, "messages", p)
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		d.Message = m
		if d.Timelines, err = s.timelines(r.Context(), m); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	s.render(w, r, http.StatusOK, "messages", p)
}

// message is the tenant's message id; another tenant's is not found.
func (s *server) message(ctx context.Context, t tenant.Tenant, id string) (*queue.Message, error) {
	if s.Messages == nil || len(id) > 200 {
		return nil, queue.ErrNotFound
	}
	m, err := s.Messages.Message(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Tenant != t.ID {
		return nil, queue.ErrNotFound
	}
	return m, nil
}

// scan reads the tenant's events from those since from, up to maxScan,
// calling fn on each; it reports whether it stopped at maxScan.
func (s *server) scan(ctx context.Context, tenantID string, from time.Time, fn func(events.Event)) (bool, error) {
	after, err := s.Events.Since(ctx, from)
	if err != nil {
		return false, err
	}
	for read := 0; read < maxScan; {
		want := min(1000, maxScan-read)
		page, err := s.Events.Events(ctx, tenantID, after, want)
		if err != nil {
			return false, err
		}
		for _, ev := range page {
			after = ev.Seq
			fn(ev)
		}
		read += len(page)
		if len(page) < want {
			return false, nil
		}
	}
	// Stopped at the bound: is there more?
	more, err := s.Events.Events(ctx, tenantID, after, 1)
	return len(more) > 0, err
}

// timelines is each recipient's events of m, read from the log after
// the message was accepted.
func (s *server) timelines(ctx context.Context, m *queue.Message) ([]timeline, error) {
	out := make([]timeline, len(m.Recipients))
	for i, rc := range m.Recipients {
		out[i].Recipient = rc
	}
	if s.Events == nil {
		return out, nil
	}
	partial, err := s.scan(ctx, m.Tenant, m.ReceivedAt, func(ev events.Event) {
		if ev.Data.MessageID != m.ID {
			return
		}
		for i := range out {
			if strings.EqualFold(out[i].Recipient.Address, ev.Data.Recipient) {
				out[i].Steps = append(out[i].Steps, ev)
			}
		}
	})
	for i := range out {
		out[i].Partial = partial
	}
	return out, err
}

// toRecipient lists the tenant's recent messages to d.Address, from the
// widest window of recipientWindows that the scan reads whole.
func (s *server) toRecipient(ctx context.Context, t tenant.Tenant, d *messagesData) error {
	if s.Events == nil {
		return nil
	}
	now := s.Now()
	for i, w := range recipientWindows {
		byID := map[string]*foundMessage{}
		partial, err := s.scan(ctx, t.ID, now.Add(-w), func(ev events.Event) {
			if ev.Data.MessageID == "" || !strings.HasPrefix(string(ev.Type), "message.") || !sameAddress(ev.Data.Recipient, d.Address) {
				return
			}
			f := byID[ev.Data.MessageID]
			if f == nil {
				f = &foundMessage{ID: ev.Data.MessageID, Time: ev.Time}
				byID[f.ID] = f
			}
			f.Last = ev.Type
		})
		if err != nil {
			return err
		}
		if partial && i < len(recipientWindows)-1 {
			continue // too many events: try a shorter span
		}
		d.Window, d.Partial, d.Found = span(w), partial, nil
		for _, f := range byID {
			d.Found = append(d.Found, *f)
		}
		slices.SortFunc(d.Found, func(a, b foundMessage) int { return b.Time.Compare(a.Time) })
		if len(d.Found) > maxFound {
			d.Found = d.Found[:maxFound]
		}
		return nil
	}
	return nil
}

// sameAddress compares a logged recipient with a normalised address.
func sameAddress(logged, addr string) bool {
	if n, err := suppression.Normalize(logged); err == nil {
		return n == addr
	}
	return strings.EqualFold(logged, addr)
}

// span names a window of recipientWindows for the page.
func span(d time.Duration) string {
	if d >= 24*time.Hour {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return strconv.Itoa(int(d/time.Hour)) + " hours"
}
