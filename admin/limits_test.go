package admin

import (
	"net/http"
	"testing"
)

// TestImportRouteLimit: the route limitBody lets take a large body is the
// CSV import's, and it is in the route table.
func TestImportRouteLimit(t *testing.T) {
	for _, r := range (&server{}).routes() {
		if r.path == importRoute && r.method == http.MethodPost {
			return
		}
	}
	t.Errorf("no POST %s in the route table: limitBody would cap imports at %d bytes", importRoute, maxBody)
}
