package console

import (
	"context"
	"net/http"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/txn"
)

// changeOf names a console change in the audit log as the API route it
// stands for: action is the method and route, target the path the API
// request would have had.
type changeOf struct {
	tenant, action, target string
}

// change runs write, a change's writes, and its audit record in one
// transaction, as the admin API does (admin.Options.Changes;
// docs/storage.md, "An admin change and its audit record"): a console
// change never commits without its record nor a record without its
// change. write decides the status the record holds; every Update and
// View made with write's context joins the transaction (txn.Join), and
// an error of write fails the whole. write may run more than once
// (txn.Runner), so it answers nobody and sets afresh what it returns.
//
// Without Options.Changes (a console wired with no backend for it) write
// runs as it is and the record is appended afterwards.
func (s *server) change(ctx context.Context, r *http.Request, v *visit, c changeOf, write func(ctx context.Context) (int, error)) (int, error) {
	if s.Changes == nil {
		status, err := write(ctx)
		if err == nil {
			s.recordAfter(ctx, r, v, c, status)
		}
		return status, err
	}
	ctx = txn.WithJoin(ctx)
	var status int
	err := s.Changes.Update(ctx, func(tx admin.Tx) error {
		st, err := write(ctx)
		if err != nil {
			return err
		}
		status = st
		return audit.Append(tx.Audit(), s.record(r, v, c, st))
	})
	return status, err
}

// record is the audit record of c, answered with status.
func (s *server) record(r *http.Request, v *visit, c changeOf, status int) *admin.AuditRecord {
	return &admin.AuditRecord{
		Time: s.Now().UTC(), Actor: v.actor(), Tenant: c.tenant,
		Action: c.action, Target: c.target,
		Status: status, RemoteIP: clientIP(r).String(),
	}
}

// recordAlone stores the record of c with status in a transaction of its
// own, for what is no change of the database (a refusal the operator
// should see) or the start of a change of many transactions (an import):
// the caller goes on only once it is stored.
func (s *server) recordAlone(ctx context.Context, r *http.Request, v *visit, c changeOf, status int) error {
	if s.Audit == nil {
		return nil
	}
	return s.Audit.Append(context.WithoutCancel(ctx), s.record(r, v, c, status))
}

// recordAfter stores the record of what already happened (how a change
// of many transactions ended); one that cannot be stored is logged with
// all it would have held.
func (s *server) recordAfter(ctx context.Context, r *http.Request, v *visit, c changeOf, status int) {
	if err := s.recordAlone(ctx, r, v, c, status); err != nil {
		s.Logger.Error("console: the audit record of a change could not be stored", "err", err,
			"actor", v.actor(), "action", c.action, "target", c.target, "status", status)
	}
}
