package postgres

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/txn"
)

// queueRows is queue.Rows in PostgreSQL (tables messages, deliveries,
// bodies and schedule, migration 0004). Records and recipients are kept
// as the JSON bbolt keeps, so both backends decode them alike; every body
// is in bodies (queue.DatabaseSpool keeps them all inline).
//
// The queue's writes run in the locking runner's READ COMMITTED
// transactions: under SERIALIZABLE, records of neighbouring messages
// (their ids sort by time) share index pages, PostgreSQL's predicate locks
// see a conflict between them, and most deliveries ran two or three
// times. Record reads a message's pending count and writes it back, so
// Message and Recipient read FOR UPDATE there: two recipients of one
// message recorded at once take turns instead of both reading 2 and
// writing 1. Every read of records and recipients there locks what it
// reads (a hold, a release, an erasure or a tenant's deletion racing an
// attempt's record would otherwise write back what it read before the
// record committed: a delivered recipient made pending again, a pending
// count taken down twice); reads in a View lock nothing.
type queueRows struct{ t *Tx }

// Queue implements backend.Tx.
func (t *Tx) Queue() queue.Rows { return queueRows{t} }

// Queue returns the queue kept by b. Its messages' bodies are in the
// database: give it queue.DatabaseSpool as its spool.
func Queue(b *Backend) *queue.Records {
	return queue.NewRecords(txn.Narrow(locking{b}, func(t backend.Tx) queue.Tx { return t }))
}

// exec defers a write to the transaction's next batch (pipe.later): no
// queue write has an outcome the code reads before its next statement.
func (r queueRows) exec(sql string, args ...any) error {
	r.t.tx.later(sql, args...)
	return nil
}

func (r queueRows) Message(id string) (queue.Message, bool, error) {
	var m queue.Message
	var raw []byte
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT record FROM messages WHERE id = $1"+r.t.forUpdate(), id).Scan(&raw)
	if err == pgx.ErrNoRows {
		return m, false, nil
	}
	if err != nil {
		return m, false, err
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, false, fmt.Errorf("message %q: %w", id, err)
	}
	return m, true, nil
}

func (r queueRows) PutMessage(m *queue.Message) error {
	head := *m
	head.Recipients, head.Body = nil, nil
	raw, err := json.Marshal(head)
	if err != nil {
		return err
	}
	r.t.tx.laterRow(`INSERT INTO messages (id, tenant, record) SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
		ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, record = excluded.record`,
		`INSERT INTO messages (id, tenant, record) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, record = excluded.record`, m.ID, m.Tenant, string(raw))
	return nil
}

func (r queueRows) Messages(after string, limit int) ([]queue.Message, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT id, record FROM messages WHERE id > $1 ORDER BY id LIMIT $2"+r.t.forUpdate(), after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.Message, error) {
		var id string
		var raw []byte
		var m queue.Message
		if err := row.Scan(&id, &raw); err != nil {
			return m, err
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, fmt.Errorf("message %q: %w", id, err)
		}
		return m, nil
	})
}

func (r queueRows) DeleteMessage(id string) error {
	return r.exec(`WITH m AS (DELETE FROM messages WHERE id = $1),
		d AS (DELETE FROM deliveries WHERE message_id = $1)
		DELETE FROM bodies WHERE message_id = $1`, id)
}

// TenantMessages reads the index messages_tenant.
func (r queueRows) TenantMessages(tenant, after string, limit int) ([]queue.Message, string, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT record FROM messages WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3"+r.t.forUpdate(), tenant, after, limit)
	if err != nil {
		return nil, "", err
	}
	ms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.Message, error) {
		var raw []byte
		var m queue.Message
		if err := row.Scan(&raw); err != nil {
			return m, err
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return m, fmt.Errorf("a message of %s: %w", tenant, err)
		}
		return m, nil
	})
	if err != nil || len(ms) < limit {
		return ms, "", err
	}
	return ms, ms[len(ms)-1].ID, nil
}

func (r queueRows) Recipient(id string, idx int) (queue.Recipient, bool, error) {
	var rc queue.Recipient
	var raw []byte
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT record FROM deliveries WHERE message_id = $1 AND idx = $2"+r.t.forUpdate(), id, idx).Scan(&raw)
	if err == pgx.ErrNoRows {
		return rc, false, nil
	}
	if err != nil {
		return rc, false, err
	}
	if err := json.Unmarshal(raw, &rc); err != nil {
		return rc, false, fmt.Errorf("delivery %q/%d: %w", id, idx, err)
	}
	return rc, true, nil
}

func (r queueRows) Recipients(id string) ([]queue.Recipient, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT record FROM deliveries WHERE message_id = $1 ORDER BY idx"+r.t.forUpdate(), id)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.Recipient, error) {
		var raw []byte
		var rc queue.Recipient
		if err := row.Scan(&raw); err != nil {
			return rc, err
		}
		if err := json.Unmarshal(raw, &rc); err != nil {
			return rc, fmt.Errorf("delivery of %q: %w", id, err)
		}
		return rc, nil
	})
}

func (r queueRows) PutRecipient(id string, rc *queue.Recipient) error {
	raw, err := json.Marshal(rc)
	if err != nil {
		return err
	}
	r.t.tx.laterRow(`INSERT INTO deliveries (message_id, idx, record) SELECT * FROM unnest($1::text[], $2::integer[], $3::text[])
		ON CONFLICT (message_id, idx) DO UPDATE SET record = excluded.record`,
		`INSERT INTO deliveries (message_id, idx, record) VALUES ($1, $2, $3)
		ON CONFLICT (message_id, idx) DO UPDATE SET record = excluded.record`, id, rc.Index, string(raw))
	return nil
}

// scanPage is how many rows Mentioning and BodiesMentioning read per
// call. They filter with events.ContainsFold in Go, as the event log
// does: a filter in SQL folds case by the database's locale, not by
// Heed's rule, and could miss an address.
const scanPage = 1000

func (r queueRows) Mentioning(addr string, after *queue.Cursor, limit int) ([]queue.Delivery, *queue.Cursor, error) {
	from := queue.Cursor{Index: -1}
	if after != nil {
		from = *after
	}
	rows, err := r.t.tx.Query(r.t.ctx, `SELECT message_id, idx, record FROM deliveries
		WHERE (message_id, idx) > ($1, $2) ORDER BY message_id, idx LIMIT $3`+r.t.forUpdate(), from.MessageID, from.Index, scanPage)
	if err != nil {
		return nil, nil, err
	}
	var out []queue.Delivery
	var next *queue.Cursor
	n := 0
	var id string
	var idx int
	var raw []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &idx, &raw}, func() error {
		n++
		if next != nil {
			return nil
		}
		if len(out) == limit {
			next = &queue.Cursor{MessageID: out[len(out)-1].MessageID, Index: out[len(out)-1].Recipient.Index}
			return nil
		}
		if !events.ContainsFold(raw, addr) {
			return nil
		}
		var rc queue.Recipient
		if err := json.Unmarshal(raw, &rc); err != nil {
			return fmt.Errorf("delivery %q/%d: %w", id, idx, err)
		}
		out = append(out, queue.Delivery{MessageID: id, Recipient: rc})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if next == nil && n == scanPage {
		next = &queue.Cursor{MessageID: id, Index: idx}
	}
	return out, next, nil
}

func (r queueRows) Body(id string) ([]byte, bool, error) {
	var body []byte
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT body FROM bodies WHERE message_id = $1", id).Scan(&body)
	if err == pgx.ErrNoRows {
		return nil, false, nil
	}
	return body, err == nil, err
}

func (r queueRows) PutBody(id string, body []byte) error {
	if body == nil {
		body = []byte{} // the column is NOT NULL; an empty body is a body
	}
	r.t.tx.laterRow(`INSERT INTO bodies (message_id, body) SELECT * FROM unnest($1::text[], $2::bytea[])
		ON CONFLICT (message_id) DO UPDATE SET body = excluded.body`,
		`INSERT INTO bodies (message_id, body) VALUES ($1, $2)
		ON CONFLICT (message_id) DO UPDATE SET body = excluded.body`, id, body)
	return nil
}

func (r queueRows) DeleteBody(id string) error {
	return r.exec("DELETE FROM bodies WHERE message_id = $1", id)
}

func (r queueRows) BodiesMentioning(addr, after string, limit int) ([]string, string, error) {
	rows, err := r.t.tx.Query(r.t.ctx, `SELECT message_id, body FROM bodies
		WHERE message_id > $1 ORDER BY message_id LIMIT $2`, after, min(limit, scanPage))
	if err != nil {
		return nil, "", err
	}
	var out []string
	n := 0
	var id string
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &body}, func() error {
		n++
		if events.ContainsFold(body, addr) {
			out = append(out, id)
		}
		return nil
	})
	if err != nil || n < min(limit, scanPage) {
		return out, "", err
	}
	return out, id, nil
}

func (r queueRows) Schedule(j queue.Job) error {
	r.t.tx.laterRow(`INSERT INTO schedule (due, message_id, idx, domain)
		SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::integer[], $4::text[]) ON CONFLICT DO NOTHING`,
		`INSERT INTO schedule (due, message_id, idx, domain) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, j.Due, j.MessageID, j.Index, j.Domain)
	return nil
}

func (r queueRows) Unschedule(j queue.Job) error {
	return r.exec("DELETE FROM schedule WHERE due = $1 AND message_id = $2 AND idx = $3", j.Due, j.MessageID, j.Index)
}

// duePage is how many schedule entries Due reads per query, on the
// primary key's order.
const duePage = 256

// Due reads the schedule in pages by its primary key (due, message_id,
// idx) in this View's snapshot. Several nodes on one database claim
// instead (Claimable, schedlease.go).
// scanJobs reads rows of (due, message_id, idx, domain).
func scanJobs(rows pgx.Rows) ([]queue.Job, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.Job, error) {
		var j queue.Job
		err := row.Scan(&j.Due, &j.MessageID, &j.Index, &j.Domain)
		return j, err
	})
}

func (r queueRows) Due(max int, fn func(queue.Job) bool) error {
	var last *queue.Job
	for passed := 0; passed < max; {
		var rows pgx.Rows
		var err error
		n := min(duePage, max-passed)
		if last == nil {
			rows, err = r.t.tx.Query(r.t.ctx, "SELECT due, message_id, idx, domain FROM schedule ORDER BY due, message_id, idx LIMIT $1", n)
		} else {
			rows, err = r.t.tx.Query(r.t.ctx, `SELECT due, message_id, idx, domain FROM schedule
				WHERE (due, message_id, idx) > ($1, $2, $3) ORDER BY due, message_id, idx LIMIT $4`,
				last.Due, last.MessageID, last.Index, n)
		}
		if err != nil {
			return err
		}
		jobs, err := scanJobs(rows)
		if err != nil {
			return err
		}
		for i := range jobs {
			passed++
			if !fn(jobs[i]) {
				return nil
			}
		}
		if len(jobs) < n {
			return nil
		}
		last = &jobs[len(jobs)-1]
	}
	return nil
}

func (r queueRows) Depth() (int, error) {
	var n int
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT count(*) FROM schedule").Scan(&n)
	return n, err
}

// attemptSQL is Attempt's statement: in the locking runner's writes it
// locks the record and the recipient (FOR UPDATE of both), as Message
// and Recipient do.
func (r queueRows) attemptSQL(withBody bool) string {
	sql := `SELECT m.record, d.record FROM messages m LEFT JOIN deliveries d ON d.message_id = m.id AND d.idx = $2
		WHERE m.id = $1`
	if withBody {
		sql = `SELECT m.record, d.record, b.body FROM messages m
			LEFT JOIN deliveries d ON d.message_id = m.id AND d.idx = $2
			LEFT JOIN bodies b ON b.message_id = m.id
			WHERE m.id = $1`
	}
	if r.t.locking() {
		// FOR UPDATE cannot reach the nullable side of an outer join: an
		// inner one, and a missing recipient reads as a missing record,
		// which Record treats alike.
		sql = `SELECT m.record, d.record FROM messages m JOIN deliveries d ON d.message_id = m.id AND d.idx = $2
			WHERE m.id = $1 FOR UPDATE`
		if withBody {
			sql = `SELECT m.record, d.record, b.body FROM messages m
				JOIN deliveries d ON d.message_id = m.id AND d.idx = $2
				LEFT JOIN bodies b ON b.message_id = m.id
				WHERE m.id = $1 FOR UPDATE OF m, d`
		}
	}
	return sql
}

// decodeAttempt decodes Attempt's record and recipient (draw nil: no
// recipient); rec and ok are Attempt's (a recipient that cannot be
// decoded is an error of a record that is there).
func decodeAttempt(id string, idx int, mraw, draw []byte) (m queue.Message, rc queue.Recipient, rec, ok bool, err error) {
	if err := json.Unmarshal(mraw, &m); err != nil {
		return m, rc, false, false, fmt.Errorf("message %q: %w", id, err)
	}
	if draw == nil {
		return m, rc, true, false, nil
	}
	if err := json.Unmarshal(draw, &rc); err != nil {
		return m, rc, true, false, fmt.Errorf("delivery %q/%d: %w", id, idx, err)
	}
	return m, rc, true, true, nil
}

// Attempt reads the record, the recipient and the body in one statement.
func (r queueRows) Attempt(id string, idx int, withBody bool) (m queue.Message, rc queue.Recipient, body []byte, rec, ok bool, err error) {
	var mraw, draw []byte
	dest := []any{&mraw, &draw}
	if withBody {
		dest = append(dest, &body)
	}
	err = r.t.tx.QueryRow(r.t.ctx, r.attemptSQL(withBody), id, idx).Scan(dest...)
	if err == pgx.ErrNoRows {
		return m, rc, nil, false, false, nil
	}
	if err != nil {
		return m, rc, nil, false, false, err
	}
	m, rc, rec, ok, err = decodeAttempt(id, idx, mraw, draw)
	if err != nil || !ok {
		return m, rc, nil, rec, false, err
	}
	return m, rc, body, true, true, nil
}

// AttemptLater is Attempt without the body, sent with the transaction's
// next statements (pipe): the records of a batch read together
// (txn.BatchRead). The function returned sends what waits if the answer
// has not come yet.
func (r queueRows) AttemptLater(id string, idx int) func() (queue.Message, queue.Recipient, bool, error) {
	var m queue.Message
	var rc queue.Recipient
	var ok, answered bool
	r.t.tx.laterRowScan(func(row pgx.Row) error {
		answered = true
		var mraw, draw []byte
		switch err := row.Scan(&mraw, &draw); {
		case err == pgx.ErrNoRows:
			return nil
		case err != nil:
			return err
		}
		var err error
		m, rc, _, ok, err = decodeAttempt(id, idx, mraw, draw)
		return err
	}, "", r.attemptSQL(false), id, idx)
	t := r.t
	return func() (queue.Message, queue.Recipient, bool, error) {
		if !answered {
			if err := t.tx.flush(t.ctx); err != nil {
				return m, rc, false, err
			}
		}
		if !answered {
			return m, rc, false, errors.New("postgres: an attempt's read went unanswered")
		}
		return m, rc, ok, nil
	}
}
