package admin

import (
	"context"
	"time"
)

// AuditRecord is one change made through the API.
type AuditRecord struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Actor is who: "operator:" and the first 8 hex digits of the SHA-256
	// of the operator token, or "api_key:" and the key's id.
	Actor string `json:"actor"`
	// Tenant is the tenant the change concerns ("" for none).
	Tenant string `json:"tenant,omitempty"`
	// Action is the route, as "METHOD /api/v1/tenants/:tenant/...".
	Action string `json:"action"`
	// Target is the request path as sent (the resource changed).
	Target string `json:"target"`
	Status int    `json:"status"`
	// RemoteIP is the client's address as the listener saw it.
	RemoteIP string `json:"remote_ip"`
}

// AuditLog keeps the audit records.
type AuditLog interface {
	Append(ctx context.Context, r *AuditRecord) error
	// Records returns up to limit records with Seq > after, oldest first,
	// of one tenant or all ("").
	Records(ctx context.Context, tenant string, after uint64, limit int) ([]AuditRecord, error)
}
