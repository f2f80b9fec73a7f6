package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/suppression"
)

// The faces' methods for heed storage copy, which moves a stopped bbolt
// database into an empty PostgreSQL one with every sequence number kept.
//
// Restore takes the lock Insert and Append take, so that rows restored
// while something else writes still commit in sequence order, and moves
// the sequence past the last row it stored: the next event or audit
// record is numbered after the copied ones. setval is not transactional;
// a copy rolled back leaves a gap in the numbers, which readers allow.

func (r eventRows) All(after uint64, limit int) ([]events.Event, error) {
	return r.query("SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2", int64(after), limit)
}

func (r eventRows) Restore(evs []events.Event, last uint64) error {
	t := r.t
	if len(evs) > 0 && !t.eventLocked {
		// The horizon lock (eventRows), at or below the first number
		// restored, before the sequence moves past them.
		if _, err := t.tx.Exec(t.ctx, `SELECT pg_advisory_xact_lock_shared((k >> 31)::int4, (k & 2147483647)::int4)
			FROM (SELECT least($1::bigint, last_value) AS k FROM event_seq) s`, int64(evs[0].Seq)); err != nil {
			return err
		}
		t.eventLocked = true
	}
	rows := make([][]any, 0, len(evs))
	for _, ev := range evs {
		e := ev
		e.Seq = 0 // the column is the sequence number
		body, err := json.Marshal(e)
		if err != nil {
			return err
		}
		rows = append(rows, []any{int64(ev.Seq), ev.Data.Tenant, ev.Time, string(body)})
	}
	return restore(t, "events", "event_seq", []string{"seq", "tenant", "happened_at", "body"}, rows, last)
}

func (r auditRows) Restore(rs []audit.Record, last uint64) error {
	t := r.t
	if err := t.xactLock(auditLock, &t.auditLocked); err != nil {
		return err
	}
	rows := make([][]any, 0, len(rs))
	for _, rec := range rs {
		body, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		rows = append(rows, []any{int64(rec.Seq), rec.Tenant, string(body)})
	}
	return restore(t, "audit", "audit_seq", []string{"seq", "tenant", "body"}, rows, last)
}

// restore copies rows (whose first column is seq, ascending) into table
// with COPY, after checking that they are above every row there, and
// moves seqName to the last of them or to last, whichever is higher.
func restore(t *Tx, table, seqName string, cols []string, rows [][]any, last uint64) error {
	top := int64(last)
	if len(rows) > 0 {
		first := rows[0][0].(int64)
		top = max(top, rows[len(rows)-1][0].(int64))
		var there int64
		if err := t.tx.QueryRow(t.ctx, "SELECT coalesce(max(seq), 0) FROM "+table).Scan(&there); err != nil {
			return err
		}
		if first <= there {
			return fmt.Errorf("%s: row %d is not above the last there, %d", table, first, there)
		}
		if _, err := t.tx.CopyFrom(t.ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
	}
	if top == 0 {
		return nil // setval refuses 0; the sequence starts at 1
	}
	// setval(s, n) makes the next nextval n+1; only ever forward.
	_, err := t.tx.Exec(t.ctx, "SELECT setval($1::regclass, greatest($2, (SELECT last_value FROM "+seqName+")))", seqName, top)
	return err
}

// Histories's positions are the tenant, a 0x00 and the hex of the last
// history's addr_key: rows come in (tenant, addr_key) order.
func (r suppressionRows) Histories(after string, limit int) ([]suppression.HistoryRow, string, error) {
	tenant, key := "", []byte{}
	if after != "" {
		var hexKey string
		var ok bool
		if tenant, hexKey, ok = strings.Cut(after, "\x00"); !ok {
			return nil, "", fmt.Errorf("soft bounce position %q is malformed", after)
		}
		var h suppression.Hash
		if _, err := fmt.Sscanf(hexKey, "%x", &key); err != nil || len(key) != len(h) {
			return nil, "", fmt.Errorf("soft bounce position %q is malformed", after)
		}
	}
	rows, err := r.t.tx.Query(r.t.ctx, `SELECT tenant, bounces, delivered, updated_at, addr_key FROM soft_bounces
		WHERE $1 = '' OR (tenant, addr_key) > ($2, $3) ORDER BY tenant, addr_key LIMIT $4`, after, tenant, key, limit)
	if err != nil {
		return nil, "", err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (suppression.HistoryRow, error) {
		var hr suppression.HistoryRow
		var bounces, key []byte
		if err := row.Scan(&hr.History.Tenant, &bounces, &hr.History.Delivered, &hr.History.Updated, &key); err != nil {
			return hr, err
		}
		hr.History.Updated = hr.History.Updated.UTC()
		copy(hr.Hash[:], key)
		if err := json.Unmarshal(bounces, &hr.History.Bounces); err != nil {
			return hr, fmt.Errorf("soft bounce history of %s: %w", hr.History.Tenant, err)
		}
		return hr, nil
	})
	if err != nil || len(out) < limit {
		return out, "", err
	}
	l := out[len(out)-1]
	return out, fmt.Sprintf("%s\x00%x", l.History.Tenant, l.Hash[:]), nil
}

// NonEmptyTable returns the name of a table of Heed's schema (but
// schema_migrations) that holds a row, "" when every one is empty: heed
// storage copy writes only into an empty database, so that nothing it
// copies mixes with rows already there.
func (db *DB) NonEmptyTable(ctx context.Context) (string, error) {
	rows, err := db.pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'
		ORDER BY table_name`)
	if err != nil {
		return "", classify(ctx, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", classify(ctx, err)
	}
	for _, t := range tables {
		var some bool
		if err := db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pgx.Identifier{t}.Sanitize()+")").Scan(&some); err != nil {
			return "", classify(ctx, err)
		}
		if some {
			return t, nil
		}
	}
	return "", nil
}
