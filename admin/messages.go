package admin

import (
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// Limits of GET .../events.
const (
	defaultEventLimit = 100
	maxEventLimit     = 1000
)

func (s *server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) readyz(c echo.Context) error {
	if s.Ready != nil {
		if err := s.Ready(); err != nil {
			return &apiError{http.StatusServiceUnavailable, "not ready: " + err.Error()}
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// listEvents pages through a tenant's event log: events with seq > after,
// oldest first, of the types asked (?type=a,b or repeated; all without);
// next is the after of the following page.
func (s *server) listEvents(c echo.Context, t tenant.Tenant) error {
	if s.Events == nil {
		return notFound("the event log is not available")
	}
	after, err := queryAfter(c, "an event")
	if err != nil {
		return err
	}
	limit, err := queryLimit(c, defaultEventLimit, maxEventLimit)
	if err != nil {
		return err
	}
	var types []events.Type
	for _, v := range c.QueryParams()["type"] {
		for _, ty := range strings.Split(v, ",") {
			if !slices.Contains(events.AllTypes, events.Type(ty)) {
				return invalid("type %q is not an event type (one of %v)", ty, events.AllTypes)
			}
			types = append(types, events.Type(ty))
		}
	}
	// With a type filter, read on in pages of limit until the page is
	// full, up to a bounded number of events (next then says where to go
	// on). next is the last event looked at, so a page stops at a match.
	var evs []events.Event
	next := after
	for scanned := 0; len(evs) < limit && scanned < 10*maxEventLimit; {
		want := min(limit, 10*maxEventLimit-scanned)
		page, err := s.Events.Events(c.Request().Context(), t.ID, next, want)
		if err != nil {
			return err
		}
		for _, ev := range page {
			next = ev.Seq
			scanned++
			if len(types) == 0 || slices.Contains(types, ev.Type) {
				if evs = append(evs, ev); len(evs) == limit {
					break
				}
			}
		}
		if len(page) < want {
			break
		}
	}
	return c.JSON(http.StatusOK, struct {
		Events []events.Event `json:"events"`
		Next   string         `json:"next"`
	}{nonNil(evs), strconv.FormatUint(next, 10)})
}

func (s *server) getMessage(c echo.Context) error {
	id := c.Param("id")
	if s.Messages == nil {
		return notFound("no message %q", id)
	}
	m, err := s.Messages.Message(c.Request().Context(), id)
	if errors.Is(err, queue.ErrNotFound) {
		return notFound("no message %q", id)
	}
	if err != nil {
		return err
	}
	if who := whoIs(c); !who.operator && who.tenant != m.Tenant {
		return notFound("no message %q", id) // another tenant's
	}
	return c.JSON(http.StatusOK, messageView{
		ID: m.ID, Tenant: m.Tenant, List: m.List, Credential: m.Credential,
		From: m.From, HeaderFrom: m.HeaderFrom, Size: m.Size, ReceivedAt: m.ReceivedAt,
		Client: m.Client, Recipients: nonNil(m.Recipients),
	})
}

// messageView is a message as the API shows it: the queue's bookkeeping
// (where the body is stored, the pending count) stays out.
type messageView struct {
	ID         string            `json:"id"`
	Tenant     string            `json:"tenant"`
	List       string            `json:"list"`
	Credential string            `json:"credential,omitempty"`
	From       string            `json:"from"`
	HeaderFrom string            `json:"header_from,omitempty"`
	Size       int64             `json:"size"`
	ReceivedAt time.Time         `json:"received_at"`
	Client     queue.Client      `json:"client"`
	Recipients []queue.Recipient `json:"recipients"`
}

const captureOff = "capture mode is off: mail is being delivered, not captured"

func (s *server) listCaptured(c echo.Context) error {
	if s.Captures == nil {
		return notFound(captureOff)
	}
	cs, err := s.Captures.List()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"captured": nonNil(cs)})
}

func (s *server) getCaptured(c echo.Context) error {
	if s.Captures == nil {
		return notFound(captureOff)
	}
	id := c.Param("id")
	if id == "" || strings.ContainsAny(id, "/\\\x00") ||
		strings.Contains(id, "..") || strings.HasPrefix(id, ".") {
		return notFound("no captured message %q", id)
	}
	rc, err := s.Captures.Open(id)
	if errors.Is(err, fs.ErrNotExist) {
		return notFound("no captured message %q", id)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	return c.Stream(http.StatusOK, "message/rfc822", rc)
}
