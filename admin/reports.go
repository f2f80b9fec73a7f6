package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"

	"github.com/heedmail/heed/internal/unread"
	"github.com/labstack/echo/v4"
)

// UnreadReports is reports/unread: the reports to the return path that
// Heed could not read or chose not to act on; *unread.Store satisfies it.
// They are cross-tenant (a report naming no known message belongs to no
// tenant), so only operator tokens reach them.
type UnreadReports interface {
	List(cursor string, limit int) ([]unread.Report, string, error)
	Open(id string) (*os.File, unread.Report, error)
	Delete(id string) error
}

// Limits of GET /api/v1/reports/unread.
const (
	defaultUnreadLimit = 100
	maxUnreadLimit     = 1000
)

const unreadOff = "reports/unread is not available"

// listUnread lists the kept reports, newest first, with why each was
// kept; cursor names the page that follows.
func (s *server) listUnread(c echo.Context) error {
	if s.Unread == nil {
		return notFound(unreadOff)
	}
	limit, err := queryLimit(c, defaultUnreadLimit, maxUnreadLimit)
	if err != nil {
		return err
	}
	rs, next, err := s.Unread.List(c.QueryParam("cursor"), limit)
	if errors.Is(err, unread.ErrBadCursor) {
		return invalid("cursor %q is not one this list handed out", c.QueryParam("cursor"))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, unreadPage{Reports: nonNil(rs), Cursor: next})
}

// unreadPage is one page of GET /api/v1/reports/unread.
type unreadPage struct {
	Reports []unread.Report `json:"reports"`
	Cursor  string          `json:"cursor,omitempty"`
}

// getUnread downloads one kept report as it was kept (its start, when
// X-Heed-Truncated says it was cut), for a mail tool or heed report
// classify. The id is checked against the store's naming scheme before
// it comes near a path.
func (s *server) getUnread(c echo.Context) error {
	if s.Unread == nil {
		return notFound(unreadOff)
	}
	id := c.Param("id")
	f, _, err := s.Unread.Open(id)
	if errors.Is(err, unread.ErrNotFound) {
		return notFound("no unread report %q", id)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := c.Response().Header()
	if info, err := f.Stat(); err == nil {
		h.Set(echo.HeaderContentLength, strconv.FormatInt(info.Size(), 10))
	}
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+id+`.eml"`) // id is [0-9a-z]
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	return c.Stream(http.StatusOK, "message/rfc822", f)
}

// deleteUnread removes one kept report (audited by require).
func (s *server) deleteUnread(c echo.Context) error {
	if s.Unread == nil {
		return notFound(unreadOff)
	}
	id := c.Param("id")
	// A file is no part of a transaction: its record commits first, once
	// the report is known to be there, so that no report goes unrecorded
	// (a removal that then fails leaves a record of a 204 that was not
	// answered; the error is).
	_, err := s.change(c, func(context.Context) (int, error) {
		f, _, err := s.Unread.Open(id)
		if err != nil {
			return 0, err
		}
		return http.StatusNoContent, f.Close()
	})
	if err == nil {
		err = s.Unread.Delete(id)
	}
	if errors.Is(err, unread.ErrNotFound) {
		return notFound("no unread report %q", id)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
