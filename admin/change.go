package admin

import (
	"context"
	"net/http"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/txn"
	"github.com/labstack/echo/v4"
)

// Tx is what the admin API needs of a storage transaction of its own: the
// audit log's face. The stores it changes join that transaction through
// the request's context (txn.WithJoin), so they need no face here.
type Tx interface {
	Audit() audit.Rows
}

const ctxAudited = "heed.audited"

// change runs write, a route's writes, and the audit record of the
// request in one transaction (docs/storage.md, "An admin change and its
// audit record"): write decides the answer's status inside the
// transaction and the record holds it, so a change never commits without
// its record nor a record without its change. Every Update and View made
// with write's context joins the transaction (txn.Join); an error of
// write fails the whole. write may run more
// than once (txn.Runner): it must not answer the client, and what it
// returns to the handler it sets afresh on each run.
//
// Without Options.Changes (tests of other packages that wire no backend
// for it) write runs as it is and require appends the record afterwards.
func (s *server) change(c echo.Context, write func(ctx context.Context) (status int, err error)) (int, error) {
	ctx := c.Request().Context()
	if s.Changes == nil {
		return write(ctx)
	}
	who := whoIs(c)
	ctx = txn.WithJoin(ctx)
	var status int
	err := s.Changes.Update(ctx, func(tx Tx) error {
		st, err := write(ctx)
		if err != nil {
			return err
		}
		status = st
		return audit.Append(tx.Audit(), s.record(c, who, st))
	})
	c.Set(ctxAudited, true) // committed with its record, or nothing committed
	return status, err
}

// record is the audit record of the request, answered with status.
func (s *server) record(c echo.Context, who principal, status int) *AuditRecord {
	return &AuditRecord{
		Time: s.now(), Actor: who.actor, Tenant: c.Param("tenant"),
		Action: c.Request().Method + " " + c.Path(), Target: auditTarget(c),
		Status: status, RemoteIP: remoteIP(c),
	}
}

// recordAlone stores the record of the request with status in a
// transaction of its own, for what is no change of the database: a
// refusal kept in the audit log (409), or the start of a change that takes
// many transactions (begin). The caller answers only once it is stored.
func (s *server) recordAlone(c echo.Context, status int) error {
	if s.Audit == nil {
		return nil
	}
	return s.Audit.Append(context.WithoutCancel(c.Request().Context()), s.record(c, whoIs(c), status))
}

// begin records, before its first write, a change that takes many
// bounded transactions (a CSV import, a replay, a privacy erasure): one
// record with 202 Accepted, then require's record of the answer once the
// change ended. A crash half-way leaves the first; a change is never
// written without a record before it. Nothing is written when the first
// record cannot be stored.
func (s *server) begin(c echo.Context) error {
	if err := s.recordAlone(c, http.StatusAccepted); err != nil {
		return err
	}
	changed(c, true) // whatever comes next, require records how it ended
	return nil
}
