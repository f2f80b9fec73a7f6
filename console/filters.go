package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/suppression"
)

// The filters of the Events and Audit log pages are GET query parameters,
// so that a filtered page is a link to keep or send. Neither log has an
// index by type, recipient or actor: a filtered page reads the log from
// its cursor and keeps what matches, reading at most scanBudget rows a
// page (and saying so), so that a filter nothing matches costs a bounded
// read, not the whole log.

// scanBudget is the most rows one filtered page reads.
const scanBudget = 10000

// timeLayout is the value of an <input type="datetime-local">, read as
// UTC (the pages show UTC).
const timeLayout = "2006-01-02T15:04"

// window is a filter's time span; a zero end is open.
type window struct{ From, To time.Time }

// set reports whether the window has either end.
func (w window) set() bool { return !w.From.IsZero() || !w.To.IsZero() }

func (w window) has(t time.Time) bool {
	return (w.From.IsZero() || !t.Before(w.From)) && (w.To.IsZero() || t.Before(w.To))
}

// parseWindow reads the from and to parameters; a bad one is a problem
// for the person to correct, said in the page.
func parseWindow(q url.Values) (window, string) {
	var w window
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"from", &w.From}, {"to", &w.To}} {
		v := strings.TrimSpace(q.Get(f.name))
		if v == "" {
			continue
		}
		t, err := time.Parse(timeLayout, v)
		if err != nil {
			if t, err = time.Parse(time.RFC3339, v); err != nil {
				return w, "“" + f.name + "” must be a date and time, as 2026-12-06T14:30 (UTC)."
			}
		}
		*f.t = t.UTC()
	}
	if !w.From.IsZero() && !w.To.IsZero() && !w.From.Before(w.To) {
		return w, "“from” must be before “to”."
	}
	return w, ""
}

// eventFilter is what the Events page and its stream keep.
type eventFilter struct {
	Type      string
	Recipient string // as typed
	addr      string // normalised
	window
}

// parseEventFilter reads ?type=&recipient=&from=&to=.
func parseEventFilter(q url.Values) (eventFilter, string) {
	f := eventFilter{Type: strings.TrimSpace(q.Get("type")), Recipient: strings.TrimSpace(q.Get("recipient"))}
	var problem string
	if f.window, problem = parseWindow(q); problem != "" {
		return f, problem
	}
	if f.Type != "" && !knownType(f.Type) {
		return f, "There is no event type “" + f.Type + "”."
	}
	if f.Recipient != "" {
		a, err := suppression.Normalize(f.Recipient)
		if err != nil {
			return f, "“" + f.Recipient + "” is not an email address."
		}
		f.addr = a
	}
	return f, ""
}

func knownType(t string) bool {
	for _, k := range events.AllTypes {
		if string(k) == t {
			return true
		}
	}
	return false
}

// Active reports whether the filter keeps less than everything.
func (f eventFilter) Active() bool {
	return f.Type != "" || f.addr != "" || f.window.set()
}

func (f eventFilter) keep(ev events.Event) bool {
	return (f.Type == "" || string(ev.Type) == f.Type) &&
		(f.addr == "" || sameAddress(ev.Data.Recipient, f.addr)) && f.has(ev.Time)
}

// past reports whether ev, and so (within TimeSlack) every event after
// it, is past the filter's end.
func (f eventFilter) past(ev events.Event) bool {
	return !f.To.IsZero() && ev.Time.After(f.To.Add(events.TimeSlack))
}

// Query is the filter as query parameters, for the pages' links.
func (f eventFilter) Query() url.Values {
	q := url.Values{}
	set(q, "type", f.Type)
	set(q, "recipient", f.Recipient)
	f.window.query(q)
	return q
}

// auditFilter is what the Audit log page keeps.
type auditFilter struct {
	Actor, Action string
	window
}

func parseAuditFilter(q url.Values) (auditFilter, string) {
	f := auditFilter{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action"))}
	var problem string
	f.window, problem = parseWindow(q)
	return f, problem
}

// Active reports whether the filter keeps less than everything.
func (f auditFilter) Active() bool {
	return f.Actor != "" || f.Action != "" || f.window.set()
}

// keep matches the actor exactly (it names one person or key) and the
// action by its words, so "suppressions" finds every suppression route.
func (f auditFilter) keep(r admin.AuditRecord) bool {
	return (f.Actor == "" || strings.EqualFold(r.Actor, f.Actor)) &&
		(f.Action == "" || strings.Contains(strings.ToLower(r.Action), strings.ToLower(f.Action))) && f.has(r.Time)
}

func (f auditFilter) Query() url.Values {
	q := url.Values{}
	set(q, "actor", f.Actor)
	set(q, "action", f.Action)
	f.window.query(q)
	return q
}

func set(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// query adds the window's ends to q.
func (w window) query(q url.Values) {
	if !w.From.IsZero() {
		q.Set("from", w.From.Format(timeLayout))
	}
	if !w.To.IsZero() {
		q.Set("to", w.To.Format(timeLayout))
	}
}

// Input is a time as an <input type="datetime-local"> value ("" for none).
func (w window) Input(which string) string {
	t := w.From
	if which == "to" {
		t = w.To
	}
	if t.IsZero() {
		return ""
	}
	return t.Format(timeLayout)
}

// scanned is a page read from a log through a filter.
type scanned[T any] struct {
	Rows []T
	// Next is the cursor of the next page (0: this is the last).
	Next uint64
	// Cursor is the last row read, kept or not: where a live tail goes on.
	Cursor uint64
	// Cut: the page stopped at scanBudget rows read, not at a full page.
	Cut bool
}

// scan reads rows after the cursor with read, in batches, keeping those
// keep takes, until want are kept, the log ends, stop says every later
// row is out of the filter, or scanBudget rows were read.
func scan[T any](ctx context.Context, after uint64, want int, read func(ctx context.Context, after uint64, n int) ([]T, error),
	seq func(T) uint64, keep, stop func(T) bool) (scanned[T], error) {
	out := scanned[T]{Cursor: after}
	read0 := 0
	for {
		n := min(max(want+1, 500), scanBudget-read0)
		batch, err := read(ctx, out.Cursor, n)
		if err != nil {
			return out, err
		}
		for _, row := range batch {
			if stop(row) {
				return out, nil
			}
			read0++
			if keep(row) {
				if len(out.Rows) == want {
					// One more than a page tells that there is a next page.
					out.Next = seq(out.Rows[want-1])
					return out, nil
				}
				out.Rows = append(out.Rows, row)
			}
			out.Cursor = seq(row)
		}
		if len(batch) < n {
			return out, nil
		}
		if read0 >= scanBudget {
			out.Cut, out.Next = true, out.Cursor
			return out, nil
		}
	}
}

// badFilter renders a page with the problem of its filter.
func (s *server) badFilter(w http.ResponseWriter, r *http.Request, name string, p page, problem string) {
	p.Problem = problem
	s.render(w, r, http.StatusBadRequest, name, p)
}
