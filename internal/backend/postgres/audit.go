package postgres

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/audit"
)

// auditRows is audit.Rows in PostgreSQL (table audit, migration 0005).
// Sequence numbers are taken under the advisory lock auditLock, held
// until COMMIT, for the reason eventRows gives: so that they are in
// commit order. Audit records are few (one per admin change), so the
// transactions that wait on it are few.
type auditRows struct{ t *Tx }

// auditLock is the key of the advisory lock: the bytes of "heed.aud".
const auditLock int64 = 0x686565642e617564

func (r auditRows) Append(rec *audit.Record) error {
	t := r.t
	if err := t.xactLock(auditLock, &t.auditLocked); err != nil {
		return err
	}
	var seq int64
	if err := t.tx.QueryRow(t.ctx, "SELECT nextval('audit_seq')").Scan(&seq); err != nil {
		return err
	}
	out := *rec
	out.Seq = uint64(seq)
	body, err := json.Marshal(out)
	if err != nil {
		return err
	}
	if _, err := t.tx.Exec(t.ctx, "INSERT INTO audit (seq, tenant, body) VALUES ($1, $2, $3)", seq, rec.Tenant, string(body)); err != nil {
		return err
	}
	rec.Seq = out.Seq
	return nil
}

func (r auditRows) Records(tenant string, after uint64, limit int) ([]audit.Record, error) {
	var rows pgx.Rows
	var err error
	if tenant == "" {
		rows, err = r.t.tx.Query(r.t.ctx, "SELECT seq, body FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2", int64(after), limit)
	} else {
		rows, err = r.t.tx.Query(r.t.ctx, "SELECT seq, body FROM audit WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3", tenant, int64(after), limit)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (audit.Record, error) {
		var seq int64
		var body []byte
		var rec audit.Record
		if err := row.Scan(&seq, &body); err != nil {
			return rec, err
		}
		if err := json.Unmarshal(body, &rec); err != nil {
			return rec, fmt.Errorf("audit record %d: %w", seq, err)
		}
		rec.Seq = uint64(seq)
		return rec, nil
	})
}

func (r auditRows) Replace(rec audit.Record) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = r.t.tx.Exec(r.t.ctx, "UPDATE audit SET tenant = $2, body = $3 WHERE seq = $1", int64(rec.Seq), rec.Tenant, string(body))
	return err
}
