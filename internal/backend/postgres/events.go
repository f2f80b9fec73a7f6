package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heedmail/heed/internal/events"
)

// eventRows is events.TxLog in PostgreSQL (table events, migration 0002).
//
// A reader's cursor must never pass an event that commits later with a
// lower sequence number, which a bigserial alone allows: two
// transactions take 5 and 6, 6 commits first, a reader sees 6 and moves
// its cursor past 5, which then commits and is never read (the outbox
// trap). Heed closes it on the reader's side, without making writers
// wait for each other (they would commit one at a time, each COMMIT's WAL
// flush included, and the relay would be held to the disk's serial flush
// rate):
//
//   - Before its first nextval('event_seq'), a transaction takes a
//     shared transaction-level advisory lock whose key is the sequence's
//     last value then, a lower bound of every number it will take (keys
//     in the two-int4 form: the number's bits above 31 and below; no other
//     lock of Heed's uses that form). Shared locks do not wait for each
//     other; COMMIT or ROLLBACK releases it, after the transaction's rows
//     are visible.
//   - A reader (horizon) reads, in one statement, the sequence's last
//     value V and then the smallest key K held: every number up to
//     min(V, K-1) is final, committed or never to be, since its
//     transaction either held its lock (bounding K) or had ended. It then
//     reads events up to that horizon in a later snapshot (the event log's
//     runner is READ COMMITTED, eventReading).
//
// A long transaction that wrote an event holds back what readers see
// after it, never what writers do.
type eventRows struct{ t *Tx }

// The event sequence numbers are split into two int4 halves for the
// horizon lock's key: bits 31 and up, and the 31 below.
const insertFirstEvent = `INSERT INTO events (seq, tenant, happened_at, body)
	SELECT nextval('event_seq'), $1, $2, $3 FROM (
		SELECT pg_advisory_xact_lock_shared((v >> 31)::int4, (v & 2147483647)::int4)
		FROM (SELECT last_value AS v FROM event_seq) s OFFSET 0) l
	RETURNING seq`

// insertEvents is insertFirstEvent for many rows at once (a batch's,
// pipe.merge): the lock's key is a lower bound of every number the
// statement takes, whatever the transaction took before.
const insertEvents = `INSERT INTO events (seq, tenant, happened_at, body)
	SELECT nextval('event_seq'), u.tenant, u.at, u.body FROM (
		SELECT pg_advisory_xact_lock_shared((v >> 31)::int4, (v & 2147483647)::int4)
		FROM (SELECT last_value AS v FROM event_seq) s OFFSET 0) l,
		unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(tenant, at, body)
	RETURNING seq`

// horizonSQL returns the sequence's last value and the horizon, without
// waiting. Writers' locks are shared (ShareLock); a waiting reader's are
// exclusive and do not count, nor does a writer's request not yet granted
// (it takes its number after its lock: a number above the last value read
// here; counted, it held a reader that holds the key, and that the writer
// waits for, on itself for ever), nor does the reader's own (a locking
// transaction that wrote an event sees its own rows, and would otherwise
// wait on itself for ever). The lock subquery refers to the sequence's row so that it runs
// after that row is read.
const horizonSQL = `SELECT s.v, least(s.v, coalesce((
		SELECT min((l.classid::bigint << 31) | l.objid::bigint) - 1 FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.mode = 'ShareLock' AND l.granted AND s.v IS NOT NULL
			AND l.pid <> pg_backend_pid()
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())), s.v))
	FROM (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS v FROM event_seq OFFSET 0) s`

func (r eventRows) Insert(ev *events.Event) error {
	t := r.t
	body, err := eventBody(*ev)
	if err != nil {
		return err
	}
	sql := `INSERT INTO events (seq, tenant, happened_at, body)
		VALUES (nextval('event_seq'), $1, $2, $3) RETURNING seq`
	if !t.eventLocked {
		sql = insertFirstEvent
	}
	// Deferred to the transaction's next batch: the number is the
	// caller's once Update has returned.
	t.tx.laterRowScan(func(row pgx.Row) error {
		var seq int64
		if err := row.Scan(&seq); err != nil {
			return err
		}
		ev.Seq = uint64(seq)
		return nil
	}, insertEvents, sql, ev.Data.Tenant, ev.Time, body)
	t.eventLocked = true
	t.notices = append(t.notices, events.Notice{Tenant: ev.Data.Tenant, Type: ev.Type, Channel: ev.Data.Channel})
	return nil
}

// horizon returns the sequence number up to which every event is final,
// after waiting (up to horizonWait) for the transactions that took
// numbers before the call to end: a reader sees every event committed
// before it asked, as on bbolt, and not only those below the oldest
// writer still at work. Reading events up to it is safe only in a
// snapshot taken after it: a READ COMMITTED transaction's next statement.
func (r eventRows) horizon() (int64, error) {
	t := r.t
	if t.iso != pgx.ReadCommitted {
		return 0, errors.New("postgres: the event log is read after a cursor in a READ COMMITTED transaction (eventReading), where each statement has its own snapshot")
	}
	var v, h int64
	if err := t.tx.QueryRow(t.ctx, horizonSQL).Scan(&v, &h); err != nil {
		return 0, err
	}
	for h < v {
		// A writer that took a number at or below v holds the lock
		// h+1 (shared): taking it exclusively waits for it and every
		// other holder of that key to end. The lock is this read-only
		// transaction's, so nothing can leave it held on a pooled
		// connection; a writer that would take the same key meanwhile
		// (none has taken a number since) waits for the read, a moment.
		// In a savepoint, as a wait that times out aborts what it is in.
		k := h + 1
		_, err := t.tx.Exec(t.ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %s; SAVEPOINT horizon;
			SELECT pg_advisory_xact_lock(%d, %d); RELEASE SAVEPOINT horizon`, horizonWait, k>>31, k&(1<<31-1)))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" {
			// A writer slower than horizonWait: read up to h, the rest
			// comes with the next read.
			_, err = t.tx.Exec(t.ctx, "ROLLBACK TO SAVEPOINT horizon")
			if err != nil {
				return 0, err
			}
			break
		}
		if err != nil {
			return 0, err
		}
		var again int64
		before := h
		if err := t.tx.QueryRow(t.ctx, horizonSQL).Scan(&again, &h); err != nil {
			return 0, err
		}
		if h <= before {
			// Holding k, the reader found the same horizon: nothing it
			// can wait for holds it back (never, if the query is right);
			// read up to it rather than ask again.
			break
		}
	}
	return min(h, v), nil
}

// horizonWait bounds how long a reader waits for the writers ahead of it
// (a long import, say): past it, it reads what is final and the rest
// comes with its next read.
const horizonWait = "'1s'"

// eventBody is the stored JSON of ev, without its sequence number (the
// column seq is it).
func eventBody(ev events.Event) (string, error) {
	ev.Seq = 0
	body, err := json.Marshal(ev)
	return string(body), err
}

// decodeEvent is the event stored as body under seq.
func decodeEvent(seq int64, body []byte) (events.Event, error) {
	var ev events.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return ev, fmt.Errorf("event %d: %w", seq, err)
	}
	ev.Seq = uint64(seq)
	return ev, nil
}

func scanEvents(rows pgx.Rows) ([]events.Event, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (events.Event, error) {
		var seq int64
		var body []byte
		if err := row.Scan(&seq, &body); err != nil {
			return events.Event{}, err
		}
		return decodeEvent(seq, body)
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
	h, err := r.horizon()
	if err != nil {
		return nil, err
	}
	return r.query("SELECT seq, body FROM events WHERE tenant = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
		tenant, int64(after), h, limit)
}

func (r eventRows) CountTenant(tenant string, after uint64, max int) (int, error) {
	var n int
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT count(*) FROM (SELECT 1 FROM events WHERE tenant = $1 AND seq > $2 LIMIT $3) AS e",
		tenant, int64(after), max).Scan(&n)
	return n, err
}

// Last is the horizon, which needs no snapshot of the rows: every event
// at or below it is final, and every one inserted later is above it.
func (r eventRows) Last() (uint64, error) {
	var v, h int64
	err := r.t.tx.QueryRow(r.t.ctx, horizonSQL).Scan(&v, &h)
	return uint64(max(h, 0)), err
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
			ev, err := decodeEvent(seq, body)
			out = append(out, ev)
			return err
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
	body, err := eventBody(ev)
	if err != nil {
		return false, err
	}
	tag, err := r.t.tx.Exec(r.t.ctx, "UPDATE events SET body = $2 WHERE seq = $1", int64(ev.Seq), body)
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

// EventHorizonHolders counts the transactions in progress that hold an
// event horizon lock: those that wrote an event and have not ended, which
// readers do not read past. A figure for diagnostics, and for the tests
// that hold such a transaction open.
func (db *DB) EventHorizonHolders(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	return n, classify(ctx, err)
}
