// Package access decides what a caller may do with a tenant's resources:
// the one rule that the admin API applies to operator tokens and tenant
// API keys, and the console to its operator and tenant users, so that a
// console user of a tenant can do exactly what an API key of that tenant
// with the same access can (issue 19: the same authorisation code, not a
// copy).
package access

import (
	"errors"

	"github.com/heedmail/heed/internal/tenant"
)

// Principal is who asks: an operator, or someone of one tenant with
// read-only or read-write access (tenant.ReadOnly, tenant.ReadWrite).
type Principal struct {
	Operator bool
	Tenant   string
	Access   string
}

// Need is what an action requires.
type Need int

const (
	// Operator actions are the operator's alone.
	Operator Need = iota + 1
	// TenantRead actions read one tenant's resources.
	TenantRead
	// TenantWrite actions change one tenant's resources.
	TenantWrite
)

// The refusals of Check. ErrNoTenant is answered as "not found": another
// tenant's resources do not exist for a tenant's caller, so that a refusal
// does not confirm that a tenant id is in use.
var (
	ErrOperatorOnly = errors.New("only an operator may do this")
	ErrNoTenant     = errors.New("no such tenant")
	ErrReadOnly     = errors.New("read-only access")
)

// Check reports whether p may do an action needing n on the resources of
// tenant id (ignored for Operator).
func Check(p Principal, n Need, id string) error {
	if p.Operator {
		return nil
	}
	switch n {
	case Operator:
		return ErrOperatorOnly
	case TenantRead, TenantWrite:
		if p.Tenant == "" || id != p.Tenant {
			return ErrNoTenant
		}
		if n == TenantWrite && p.Access != tenant.ReadWrite {
			return ErrReadOnly
		}
		return nil
	}
	return ErrOperatorOnly // an unknown need is refused
}
