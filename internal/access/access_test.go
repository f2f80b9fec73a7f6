package access

import (
	"errors"
	"testing"

	"github.com/heedmail/heed/internal/tenant"
)

func TestCheck(t *testing.T) {
	op := Principal{Operator: true}
	ro := Principal{Tenant: "acme", Access: tenant.ReadOnly}
	rw := Principal{Tenant: "acme", Access: tenant.ReadWrite}
	for _, c := range []struct {
		name string
		p    Principal
		n    Need
		id   string
		want error
	}{
		{"operator, operator action", op, Operator, "", nil},
		{"operator, another tenant", op, TenantWrite, "other", nil},
		{"tenant, operator action", rw, Operator, "acme", ErrOperatorOnly},
		{"tenant reads its own", ro, TenantRead, "acme", nil},
		{"read-only writes", ro, TenantWrite, "acme", ErrReadOnly},
		{"read-write writes", rw, TenantWrite, "acme", nil},
		{"another tenant's read", rw, TenantRead, "other", ErrNoTenant},
		{"another tenant's write", rw, TenantWrite, "other", ErrNoTenant},
		{"no tenant at all", Principal{}, TenantRead, "", ErrNoTenant},
		{"unknown need", rw, Need(99), "acme", ErrOperatorOnly},
	} {
		if got := Check(c.p, c.n, c.id); !errors.Is(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("%s: Check = %v, want %v", c.name, got, c.want)
		}
	}
}
