package console

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// The Events page's live tail: server-sent events (HTML Living Standard,
// "Server-sent events", section 9.2) that carry each new event of the
// tenant as the page's own table row, rendered by the page's template.
// The stream learns of new events from the event log's notices (the
// backend calls Watch's function after each commit, as it does for the
// webhooks dispatcher), so an idle stream reads nothing; it reads the log
// after its cursor when woken, and so never misses an event a notice was
// lost for or shows one twice.

// heartbeat is how often an idle stream writes a comment (a proxy or the
// admin listener's write_timeout would otherwise cut it) and checks that
// its session is still signed in.
const heartbeat = 15 * time.Second

// streamBatch is the most events a stream reads at a time.
const streamBatch = 100

// watcher is the part of the event log that announces commits.
type watcher interface {
	Watch(fn func(events.Notice))
}

// tail fans the log's notices out to the open streams of each tenant.
type tail struct {
	mu   sync.Mutex
	subs map[chan struct{}]string // a stream's wake-up and its tenant
}

func newTail(w watcher) *tail {
	t := &tail{subs: map[chan struct{}]string{}}
	w.Watch(t.notify)
	return t
}

// notify runs on the committer: it must not block, so a stream already
// due to wake is not told twice.
func (t *tail) notify(n events.Notice) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, id := range t.subs {
		if id == n.Tenant {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// wakeAll wakes every stream, to check its session (one just ended).
func (t *tail) wakeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (t *tail) subscribe(tenantID string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	t.mu.Lock()
	t.subs[c] = tenantID
	t.mu.Unlock()
	return c, func() {
		t.mu.Lock()
		delete(t.subs, c)
		t.mu.Unlock()
	}
}

// eventStream is GET …/events/stream?after=&type=&recipient=&from=: the
// tenant's events after the cursor that the filter keeps, then each new
// one as it is committed, until the client goes away, the relay stops or
// the session's time is up. tenantRead has checked the user against the
// tenant as for the page.
func (s *server) eventStream(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	if s.tail == nil || s.Events == nil {
		s.fail(w, r, http.StatusNotFound, "Live events are not available.")
		return
	}
	cursor, err := after(r)
	// A reconnecting EventSource says where it was (its last event's id).
	if last, lerr := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); lerr == nil {
		cursor = max(cursor, last)
	}
	f, problem := parseEventFilter(r.URL.Query())
	if err != nil || problem != "" || !f.To.IsZero() {
		s.fail(w, r, http.StatusBadRequest, "A live tail takes after=, type=, recipient= and from= only.")
		return
	}
	// Subscribed before the first read, so an event committed between the
	// read and the wait still wakes the stream.
	wake, unsubscribe := s.tail.subscribe(t.ID)
	defer unsubscribe()

	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := bufio.NewWriter(w)
	// The browser reconnects after 5 s if the stream breaks.
	fmt.Fprint(bw, "retry: 5000\n\n")

	// The stream ends when the session would end if the person did
	// nothing more: an open page must not keep a session alive forever.
	end := time.NewTimer(sessionLeft(v.sess, s.Now()))
	defer end.Stop()
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	ctx := r.Context()
	for {
		var full bool
		if cursor, full, err = s.sendAfter(ctx, bw, t, f, cursor); err != nil {
			if ctx.Err() == nil {
				s.Logger.Error("console: a live tail", "tenant", t.ID, "err", err)
			}
			return
		}
		if full {
			continue
		}
		if bw.Flush() != nil || rc.Flush() != nil {
			return // the client went away
		}
		select {
		case <-ctx.Done():
			return
		case <-s.Stop:
			return
		case <-end.C:
			endStream(bw, rc)
			return
		case <-beat.C:
			fmt.Fprint(bw, ": still here\n\n")
		case <-wake:
		}
		// Signed out (in another tab, say) or the user deleted: the
		// stream ends with the session, not at its deadline.
		if live, err := s.Users.Live(ctx, cookie(r, sessionCookie)); err == nil && !live {
			endStream(bw, rc)
			return
		}
	}
}

// sendAfter writes the events after cursor that f keeps, one batch, and
// returns the new cursor and whether the batch was full (more may wait).
func (s *server) sendAfter(ctx context.Context, bw *bufio.Writer, t tenant.Tenant, f eventFilter, cursor uint64) (uint64, bool, error) {
	evs, err := s.Events.Events(ctx, t.ID, cursor, streamBatch)
	if err != nil {
		return cursor, false, err
	}
	for _, ev := range evs {
		cursor = ev.Seq
		if f.keep(ev) {
			if err := s.writeEvent(bw, t, ev); err != nil {
				return cursor, false, err
			}
		}
	}
	return cursor, len(evs) == streamBatch, nil
}

// endStream tells the page that the session is over: it closes the
// stream rather than reconnect (console.js).
func endStream(bw *bufio.Writer, rc *http.ResponseController) {
	fmt.Fprint(bw, "event: end\ndata: session\n\n")
	bw.Flush()
	rc.Flush()
}

// sessionLeft is how long sess lives if it is not used again.
func sessionLeft(sess consoleusers.Session, now time.Time) time.Duration {
	idle := sess.SeenAt.Add(consoleusers.IdleTimeout)
	abs := sess.CreatedAt.Add(consoleusers.MaxAge)
	if abs.Before(idle) {
		idle = abs
	}
	return max(idle.Sub(now), 0)
}

// eventRow is the data of the "event-row" template.
type eventRow struct {
	TenantID string
	Event    events.Event
}

// writeEvent writes ev as an SSE event named "event" whose data is the
// page's table row for it (escaped by html/template as on the page), one
// "data:" field per line, and whose id is its sequence number.
func (s *server) writeEvent(bw *bufio.Writer, t tenant.Tenant, ev events.Event) error {
	var b bytes.Buffer
	if err := s.pages["events"].ExecuteTemplate(&b, "event-row", eventRow{t.ID, ev}); err != nil {
		return err
	}
	fmt.Fprintf(bw, "event: event\nid: %d\n", ev.Seq)
	// Every CR, LF or CRLF ends a field in a stream, so a reply with a
	// stray CR could otherwise start a field of its own ("event: end"):
	// each becomes a line of data, which the browser joins with LF.
	row := bytes.ReplaceAll(bytes.TrimSpace(b.Bytes()), []byte("\r\n"), []byte("\n"))
	row = bytes.ReplaceAll(row, []byte("\r"), []byte("\n"))
	for line := range bytes.SplitSeq(row, []byte("\n")) {
		bw.WriteString("data: ")
		bw.Write(line)
		bw.WriteString("\n")
	}
	_, err := bw.WriteString("\n")
	return err
}
