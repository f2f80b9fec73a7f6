package admin

import (
	"strings"
	"testing"
)

// TestValuesThatAreNotText: a path or body value holding a NUL or bytes
// that are not UTF-8 gets the answer an unknown or unacceptable value
// gets, on every backend: PostgreSQL refuses them in text (SQLSTATE
// 22021), which answered 500 where bbolt answered 404 or stored them.
func TestValuesThatAreNotText(t *testing.T) {
	for _, b := range openBackends {
		t.Run(b.name, func(t *testing.T) {
			e, _ := newFaultyEnv(t, b.open(t))
			e.createTenant("acme")
			const T = "/api/v1/tenants/acme"
			for _, path := range []string{T + "/credentials/a%00b", T + "/credentials/a%FFb", T + "/api-keys/a%00b", T + "/api-keys/a%FFb"} {
				e.wantProblem(404, "DELETE", path, "")
			}
			for _, c := range []struct{ method, path, body, field string }{
				{"POST", "/api/v1/tenants", `{"id":"x1","name":"a\u0000b","postal_address":"1 Main St"}`, "name"},
				{"POST", "/api/v1/tenants", `{"id":"x2","name":"X","postal_address":"1 Main\u0000 St"}`, "postal_address"},
				{"PATCH", T, `{"name":"a\u0000b"}`, "name"},
				{"PATCH", T, `{"postal_address":"\u0000"}`, "postal_address"},
				{"POST", T + "/api-keys", `{"access":"read-only","name":"a\u0000b"}`, "name"},
				{"PUT", T + "/lists/news", `{"name":"a\u0000b","kind":"marketing"}`, "name"},
			} {
				p := e.wantProblem(400, c.method, c.path, c.body)
				if !strings.HasPrefix(p.Detail, c.field+" ") || !strings.Contains(p.Detail, "NUL") {
					t.Errorf("%s %s %s: detail %q, want one naming %s and the NUL", c.method, c.path, c.body, p.Detail, c.field)
				}
			}
			e.wantProblem(404, "GET", T+"/lists/news", "")
			e.wantProblem(404, "GET", "/api/v1/tenants/x1", "")
		})
	}
}
