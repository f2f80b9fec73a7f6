package backendtest

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// What a Faulty backend makes fail: one write, half-way through a change
// or at its audit record.
const (
	FailNothing = iota
	FailAudit
	FailChange
)

// ErrDiskFull is the error of the write a Faulty backend fails.
var ErrDiskFull = errors.New("disk full")

// Faulty is a backend whose transactions fail the write named by Fail:
// the audit record's (Audit().Append), or the change's own row (a
// suppression's Put or Delete, a credential's PutCredential, a tenant's
// DeleteTenant, an endpoint's PutEndpoint). The tests of the admin API
// and of the console use it to show a change and its audit record are
// one transaction.
type Faulty struct {
	backend.Backend
	Fail *atomic.Int32
}

func (f Faulty) Update(ctx context.Context, fn func(backend.Tx) error) error {
	return f.Backend.Update(ctx, func(t backend.Tx) error { return fn(faultyTx{t, f.Fail}) })
}

type faultyTx struct {
	backend.Tx
	fail *atomic.Int32
}

func (t faultyTx) change() bool { return t.fail.Load() == FailChange }

func (t faultyTx) Audit() audit.Rows {
	return faultyAudit{t.Tx.Audit(), t.fail.Load() == FailAudit}
}
func (t faultyTx) Suppressions() suppression.Rows {
	return faultySuppressions{t.Tx.Suppressions(), t.change()}
}
func (t faultyTx) Tenants() tenant.Rows    { return faultyTenants{t.Tx.Tenants(), t.change()} }
func (t faultyTx) Webhooks() webhooks.Rows { return faultyWebhooks{t.Tx.Webhooks(), t.change()} }

func failIf(fail bool, write func() error) error {
	if fail {
		return ErrDiskFull
	}
	return write()
}

type faultyAudit struct {
	audit.Rows
	fail bool
}

func (a faultyAudit) Append(r *audit.Record) error {
	return failIf(a.fail, func() error { return a.Rows.Append(r) })
}

type faultySuppressions struct {
	suppression.Rows
	fail bool
}

func (s faultySuppressions) Put(r suppression.Row) error {
	return failIf(s.fail, func() error { return s.Rows.Put(r) })
}

func (s faultySuppressions) Delete(tenant string, k suppression.Key) error {
	return failIf(s.fail, func() error { return s.Rows.Delete(tenant, k) })
}

type faultyTenants struct {
	tenant.Rows
	fail bool
}

func (r faultyTenants) PutCredential(c tenant.Credential) error {
	return failIf(r.fail, func() error { return r.Rows.PutCredential(c) })
}

func (r faultyTenants) DeleteTenant(id string) error {
	return failIf(r.fail, func() error { return r.Rows.DeleteTenant(id) })
}

type faultyWebhooks struct {
	webhooks.Rows
	fail bool
}

func (w faultyWebhooks) PutEndpoint(ep *webhooks.Endpoint) error {
	return failIf(w.fail, func() error { return w.Rows.PutEndpoint(ep) })
}
