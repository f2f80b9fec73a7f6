package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/events"
)

// eventRows is events.TxLog in PostgreSQL (table events, migration 0002).
//
// Sequence order is commit order, which a bigserial alone does not give:
// two transactions take 5 and 6, 6 commits first, a reader sees 6 and
// moves its cursor past 5, which then commits and is never read (the
// outbox trap). So a transaction takes the transaction-level advisory
// lock eventLock before its first event's nextval, and holds it until
// COMMIT or ROLLBACK releases it: the transaction that gets 6 waited for
// the one that got 5 to end, and a snapshot that sees 6 sees 5 too.
// PostgreSQL makes a transaction visible before it releases its locks.
//
// The price is that transactions that write events commit one at a time
// from their first event on, the COMMIT's WAL flush included. Callers
// append events last in their transactions; the figure per message is
// for issue 16's benchmark to measure.
type eventRows struct{ t *Tx }

// eventLock is the key of the advisory lock: the bytes of "heed.evt".
const eventLock int64 = 0x686565642e657674

func (r eventRows) Insert(ev *events.Event) error {
	t := r.t
	if err := t.xactLock(eventLock, &t.eventLocked); err != nil {
		return err
	}
	e := *ev
	e.Seq = 0 // the column is the sequence number
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	var seq int64
	err = t.tx.QueryRow(t.ctx, `INSERT INTO events (seq, tenant, happened_at, body)
		VALUES (nextval('event_seq'), $1, $2, $3) RETURNING seq`, ev.Data.Tenant, ev.Time, string(body)).Scan(&seq)
	if err != nil {
		return err
	}
	ev.Seq = uint64(seq)
	t.notices = append(t.notices, events.Notice{Tenant: ev.Data.Tenant, Type: ev.Type, Channel: ev.Data.Channel})
	return nil
}

func scanEvents(rows pgx.Rows) ([]events.Event, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (events.Event, error) {
		var seq int64
		var body string
		var ev events.Event
		if err := row.Scan(&seq, &body); err != nil {
			return ev, err
		}
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			return ev, fmt.Errorf("event %d: %w", seq, err)
		}
		ev.Seq = uint64(seq)
		return ev, nil
	})
}

func (r eventRows) query(sql string, args ...any) ([]events.Event, error) {
	rows, err := r.t.tx.Query(r.t.ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return scanEvents(rows)
}

func (r eventRows) Get(seq uint64) (events.Event, bool, error) {
	evs, err := r.query("SELECT seq, body FROM events WHERE seq = $1", int64(seq))
	if err != nil || len(evs) == 0 {
		return events.Event{}, false, err
	}
	return evs[0], true, nil
}

func (r eventRows) Tenant(tenant string, after uint64, limit int) ([]events.Event, error) {
	return r.query("SELECT seq, body FROM events WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
		tenant, int64(after), limit)
}

func (r eventRows) CountTenant(tenant string, after uint64, max int) (int, error) {
	var n int
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT count(*) FROM (SELECT 1 FROM events WHERE tenant = $1 AND seq > $2 LIMIT $3) AS e",
		tenant, int64(after), max).Scan(&n)
	return n, err
}

func (r eventRows) Last() (uint64, error) {
	var seq int64
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT coalesce(max(seq), 0) FROM events").Scan(&seq)
	return uint64(seq), err
}

// SeqBefore reads the index on happened_at: exact, where bbolt's binary
// search is only as good as the log's time order.
func (r eventRows) SeqBefore(t time.Time) (uint64, error) {
	var seq int64
	err := r.t.tx.QueryRow(r.t.ctx, `SELECT coalesce(
		(SELECT min(seq) - 1 FROM events WHERE happened_at >= $1),
		(SELECT coalesce(max(seq), 0) FROM events))`, t).Scan(&seq)
	return uint64(seq), err
}

// Mentioning reads the log in pages and keeps the events whose stored
// JSON events.ContainsFold accepts, as bbolt does: a filter in SQL (lower,
// ILIKE) folds case by the database's locale, not by Heed's rule, and
// could miss an address. A privacy export reads the whole table; an index
// for it is future work (docs/storage.md).
func (r eventRows) Mentioning(addr string, after uint64, limit int) ([]events.Event, error) {
	var out []events.Event
	const page = 1000
	for len(out) < limit {
		rows, err := r.t.tx.Query(r.t.ctx, "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2", int64(after), page)
		if err != nil {
			return nil, err
		}
		n := 0
		var seq int64
		var body []byte
		_, err = pgx.ForEachRow(rows, []any{&seq, &body}, func() error {
			n++
			after = uint64(seq)
			if len(out) == limit || !events.ContainsFold(body, addr) {
				return nil
			}
			var ev events.Event
			if err := json.Unmarshal(body, &ev); err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			ev.Seq = uint64(seq)
			out = append(out, ev)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n < page {
			break
		}
	}
	return out, nil
}

func (r eventRows) Replace(ev events.Event) (bool, error) {
	e := ev
	e.Seq = 0
	body, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	tag, err := r.t.tx.Exec(r.t.ctx, "UPDATE events SET body = $2 WHERE seq = $1", int64(ev.Seq), string(body))
	return tag.RowsAffected() == 1, err
}

func (r eventRows) DeleteTenant(tenant string, max int) (int, error) {
	tag, err := r.t.tx.Exec(r.t.ctx, `DELETE FROM events WHERE seq IN
		(SELECT seq FROM events WHERE tenant = $1 ORDER BY seq LIMIT $2)`, tenant, max)
	return int(tag.RowsAffected()), err
}

func (r eventRows) Purge(cutoff time.Time, from uint64, max int) (int, uint64, error) {
	var n int
	var last int64
	err := r.t.tx.QueryRow(r.t.ctx, `WITH d AS (DELETE FROM events WHERE seq IN
		(SELECT seq FROM events WHERE happened_at < $1 AND seq > $2 ORDER BY seq LIMIT $3) RETURNING seq)
		SELECT count(*), coalesce(max(seq), 0) FROM d`, cutoff, int64(from), max).Scan(&n, &last)
	if err != nil || n < max {
		return n, 0, err
	}
	return n, uint64(last), nil
}

// EventLockWaiters counts the sessions waiting for the event lock: the
// transactions with an event to write while another one that wrote one
// has not committed yet. A figure for diagnostics, and for the tests that
// hold a transaction open to show that no cursor passes it.
func (db *DB) EventLockWaiters(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND ((classid::bigint << 32) | objid::bigint) = $1`, eventLock).Scan(&n)
	return n, classify(ctx, err)
}
