package admin

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// importRoute is the one route whose body is not JSON but a CSV file.
const importRoute = "/api/v1/tenants/:tenant/suppressions/import"

// limitBody bounds every request body before a handler reads it: maxBody
// for JSON, maxImportBody for a CSV import. A body declared larger
// (Content-Length) is refused with 413 before a byte of it is read, so a
// client cannot make the relay take in what it will throw away; one that
// grows past the limit while read fails there (http.MaxBytesReader, which
// also closes the connection after the answer).
func limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		limit := int64(maxBody)
		if c.Path() == importRoute {
			limit = maxImportBody
		}
		req := c.Request()
		if req.ContentLength > limit {
			return &apiError{http.StatusRequestEntityTooLarge,
				fmt.Sprintf("the request body is %d bytes; this endpoint takes at most %d", req.ContentLength, limit)}
		}
		if req.Body != nil && req.Body != http.NoBody {
			// On a copy, as http.StripPrefix does: the server must find
			// its own body in its request after the handler.
			r2 := new(http.Request)
			*r2 = *req
			r2.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
			c.SetRequest(r2)
		}
		return next(c)
	}
}
