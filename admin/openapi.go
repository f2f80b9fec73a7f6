package admin

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDoc is the OpenAPI 3.1 document of this API, kept by hand beside
// the route table; TestOpenAPIMatchesRoutes holds the two together.
//
//go:embed openapi.json
var openAPIDoc []byte

// openapi serves the document (no token needed: it describes, it holds no
// data).
func (s *server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openAPIDoc)
}
