package public

import (
	"fmt"

	"github.com/heedmail/heed/internal/txn"
	"github.com/labstack/echo/v4"
)

// refuseWhileDown answers a link 503 at once while the database is known
// to be down: an opt-out cannot be recorded, nor a page shown, without
// it. A mailbox provider retries a one-click POST that got a 5xx (RFC
// 8058 leaves retries to the sender of the POST), and Retry-After tells
// it when; the page asks the reader to try again. Before the limits, so
// that a refusal does not spend a client's budget.
func (s *server) refuseWhileDown(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.Unavailable == nil || !s.Unavailable() {
			return next(c)
		}
		c.Response().Header().Set("Retry-After", "5")
		return errDown
	}
}

// errDown is refuseWhileDown's error: a 503 like any other lost
// database, without a log line per request.
var errDown = fmt.Errorf("public: refused while the database is down: %w", txn.ErrUnavailable)
