package postgres

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/webhooks"
)

// webhookRows is webhooks.Rows in PostgreSQL (tables webhook_endpoints
// and webhook_deliveries, migration 0005). The schedule and the dead
// letters are partial indexes of the deliveries (due IS NOT NULL; status
// 'failed'), kept in step by PutDelivery's one statement.
//
// Writes run in Update's SERIALIZABLE transaction: the domain code reads
// a delivery and its endpoint and decides (a resend stands over an
// attempt that began before it; a paused endpoint's retry waits at Hold),
// and SERIALIZABLE keeps that read-decide-write right against the
// dispatcher and the admin API writing the same delivery at once: one of
// them runs again and sees the other's row. The rows are an endpoint's,
// so conflicts are rare.
type webhookRows struct{ t *Tx }

func (r webhookRows) query(sql string, args ...any) (pgx.Rows, error) {
	return r.t.tx.Query(r.t.ctx, sql, args...)
}

func (r webhookRows) exec(sql string, args ...any) (int, error) {
	tag, err := r.t.tx.Exec(r.t.ctx, sql, args...)
	return int(tag.RowsAffected()), err
}

func scanEndpoint(row pgx.CollectableRow) (webhooks.Endpoint, error) {
	var body []byte
	var ep webhooks.Endpoint
	if err := row.Scan(&body); err != nil {
		return ep, err
	}
	if err := json.Unmarshal(body, &ep); err != nil {
		return ep, fmt.Errorf("webhook endpoint: %w", err)
	}
	return ep, nil
}

func (r webhookRows) Endpoint(tenant, id string) (webhooks.Endpoint, bool, error) {
	rows, err := r.query("SELECT body FROM webhook_endpoints WHERE tenant = $1 AND id = $2", tenant, id)
	if err != nil {
		return webhooks.Endpoint{}, false, err
	}
	eps, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil || len(eps) == 0 {
		return webhooks.Endpoint{}, false, err
	}
	return eps[0], true, nil
}

func (r webhookRows) Endpoints(tenant string) ([]webhooks.Endpoint, error) {
	rows, err := r.query("SELECT body FROM webhook_endpoints WHERE $1 = '' OR tenant = $1 ORDER BY tenant, id", tenant)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanEndpoint)
}

func (r webhookRows) PutEndpoint(ep *webhooks.Endpoint) error {
	body, err := json.Marshal(ep)
	if err != nil {
		return err
	}
	_, err = r.exec(`INSERT INTO webhook_endpoints (tenant, id, body) VALUES ($1, $2, $3)
		ON CONFLICT (tenant, id) DO UPDATE SET body = EXCLUDED.body`, ep.Tenant, ep.ID, string(body))
	return err
}

func (r webhookRows) DeleteEndpoint(tenant, id string) (bool, error) {
	n, err := r.exec("DELETE FROM webhook_endpoints WHERE tenant = $1 AND id = $2", tenant, id)
	return n == 1, err
}

const deliveryCols = "seq, body"

func scanDelivery(row pgx.CollectableRow) (webhooks.Delivery, error) {
	var seq int64
	var body []byte
	var d webhooks.Delivery
	if err := row.Scan(&seq, &body); err != nil {
		return d, err
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return d, fmt.Errorf("webhook delivery %d: %w", seq, err)
	}
	return d, nil
}

func (r webhookRows) deliveries(sql string, args ...any) ([]webhooks.Delivery, error) {
	rows, err := r.query(sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanDelivery)
}

func (r webhookRows) Delivery(tenant, endpoint string, seq uint64) (webhooks.Delivery, bool, error) {
	ds, err := r.deliveries("SELECT "+deliveryCols+" FROM webhook_deliveries WHERE tenant = $1 AND endpoint = $2 AND seq = $3",
		tenant, endpoint, int64(seq))
	if err != nil || len(ds) == 0 {
		return webhooks.Delivery{}, false, err
	}
	return ds[0], true, nil
}

func (r webhookRows) PutDelivery(d *webhooks.Delivery) error {
	body, err := json.Marshal(d)
	if err != nil {
		return err
	}
	var due *int64
	if d.Status.Scheduled() {
		n := d.NextAttempt.UnixNano()
		due = &n
	}
	_, err = r.exec(`INSERT INTO webhook_deliveries (tenant, endpoint, seq, status, due, updated_ns, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (tenant, endpoint, seq) DO UPDATE SET status = EXCLUDED.status, due = EXCLUDED.due,
			updated_ns = EXCLUDED.updated_ns, body = EXCLUDED.body`,
		d.Tenant, d.Endpoint, int64(d.Seq), string(d.Status), due, d.UpdatedAt.UnixNano(), string(body))
	return err
}

func (r webhookRows) Handled(tenant, endpoint string, seqs []uint64) (map[uint64]bool, error) {
	out := make(map[uint64]bool)
	if len(seqs) == 0 {
		return out, nil
	}
	ss := make([]int64, len(seqs))
	for i, s := range seqs {
		ss[i] = int64(s)
	}
	rows, err := r.query("SELECT seq FROM webhook_deliveries WHERE tenant = $1 AND endpoint = $2 AND seq = ANY($3)", tenant, endpoint, ss)
	if err != nil {
		return nil, err
	}
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&seq}, func() error {
		out[uint64(seq)] = true
		return nil
	})
	return out, err
}

// Deliveries filters by status in the query, so it examines as many rows
// as PostgreSQL needs rather than scan.
func (r webhookRows) Deliveries(tenant, endpoint string, status webhooks.Status, from uint64, limit, _ int) ([]webhooks.Delivery, uint64, bool, error) {
	ds, err := r.deliveries("SELECT "+deliveryCols+` FROM webhook_deliveries
		WHERE tenant = $1 AND endpoint = $2 AND seq <= $3 AND ($4 = '' OR status = $4)
		ORDER BY seq DESC LIMIT $5`, tenant, endpoint, int64(min(from, math.MaxInt64)), string(status), limit+1)
	if err != nil || len(ds) <= limit {
		return ds, 0, false, err
	}
	return ds[:limit], ds[limit].Seq, true, nil
}

func (r webhookRows) DeadLetters(tenant string, after *webhooks.Job, limit int) ([]webhooks.Delivery, bool, error) {
	a := webhooks.Job{}
	if after != nil {
		a = *after
	}
	ds, err := r.deliveries("SELECT "+deliveryCols+` FROM webhook_deliveries
		WHERE status = 'failed' AND ($1 = '' OR tenant = $1) AND ($2 OR (tenant, endpoint, seq) > ($3, $4, $5))
		ORDER BY tenant, endpoint, seq LIMIT $6`, tenant, after == nil, a.Tenant, a.Endpoint, int64(a.Seq), limit+1)
	if err != nil || len(ds) <= limit {
		return ds, false, err
	}
	return ds[:limit], true, nil
}

func (r webhookRows) DeleteDeliveries(tenant, endpoint string, max int) (int, error) {
	return r.exec(`DELETE FROM webhook_deliveries WHERE (tenant, endpoint, seq) IN
		(SELECT tenant, endpoint, seq FROM webhook_deliveries WHERE tenant = $1 AND ($2 = '' OR endpoint = $2) LIMIT $3)`,
		tenant, endpoint, max)
}

// PurgeDeliveries deletes through the index of finished deliveries, so it
// needs no position: "" when fewer than max were left, "more" otherwise.
func (r webhookRows) PurgeDeliveries(cutoff time.Time, _ string, max int) (int, string, error) {
	n, err := r.exec(`DELETE FROM webhook_deliveries WHERE (tenant, endpoint, seq) IN
		(SELECT tenant, endpoint, seq FROM webhook_deliveries WHERE due IS NULL AND updated_ns < $1 LIMIT $2)`,
		cutoff.UnixNano(), max)
	if err != nil || n < max {
		return n, "", err
	}
	return n, "more", nil
}

// position is Mentioning's: tenant 0x00 endpoint 0x00 seq (decimal) of
// the next row; ids hold no 0x00.
func parsePosition(p string) (tenant, endpoint string, seq int64, ok bool) {
	if p == "" {
		return "", "", 0, true
	}
	parts := strings.Split(p, "\x00")
	if len(parts) != 3 {
		return "", "", 0, false
	}
	seq, err := strconv.ParseInt(parts[2], 10, 64)
	return parts[0], parts[1], seq, err == nil
}

// Mentioning compares in Go with events.ContainsFold, for the reason
// eventRows.Mentioning gives: SQL's case folding is the locale's, not
// Heed's rule. It reads max rows in key order.
func (r webhookRows) Mentioning(addr, from string, max int) ([]webhooks.Delivery, string, error) {
	t, e, s, ok := parsePosition(from)
	if !ok {
		return nil, "", fmt.Errorf("postgres: webhook deliveries: bad position %q", from)
	}
	rows, err := r.query(`SELECT tenant, endpoint, seq, body FROM webhook_deliveries
		WHERE (tenant, endpoint, seq) >= ($1, $2, $3) ORDER BY tenant, endpoint, seq LIMIT $4`, t, e, s, max+1)
	if err != nil {
		return nil, "", err
	}
	var out []webhooks.Delivery
	var next string
	n := 0
	var tenant, endpoint string
	var seq int64
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&tenant, &endpoint, &seq, &body}, func() error {
		if n++; n > max {
			next = tenant + "\x00" + endpoint + "\x00" + strconv.FormatInt(seq, 10)
			return nil
		}
		if !events.ContainsFold(body, addr) {
			return nil
		}
		var d webhooks.Delivery
		if err := json.Unmarshal(body, &d); err != nil {
			return fmt.Errorf("webhook delivery %d: %w", seq, err)
		}
		out = append(out, d)
		return nil
	})
	return out, next, err
}

func scanJob(row pgx.CollectableRow) (webhooks.Job, error) {
	var j webhooks.Job
	var seq, due int64
	if err := row.Scan(&j.Tenant, &j.Endpoint, &seq, &due); err != nil {
		return j, err
	}
	j.Seq, j.Due = uint64(seq), time.Unix(0, due)
	return j, nil
}

func (r webhookRows) jobs(sql string, args ...any) ([]webhooks.Job, error) {
	rows, err := r.query(sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJob)
}

func (r webhookRows) Due(now time.Time, limit int, skip func(webhooks.Job) bool) ([]webhooks.Job, time.Time, error) {
	js, err := r.jobs(`SELECT tenant, endpoint, seq, due FROM webhook_deliveries WHERE due IS NOT NULL
		ORDER BY due, tenant, endpoint, seq LIMIT $1`, 4*limit+1024)
	if err != nil {
		return nil, time.Time{}, err
	}
	var out []webhooks.Job
	for _, j := range js {
		if j.Due.After(now) {
			var next time.Time
			if !j.Due.Equal(webhooks.Hold) {
				next = j.Due
			}
			return out, next, nil
		}
		if skip != nil && skip(j) {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, j)
	}
	return out, time.Time{}, nil
}

func (r webhookRows) Jobs(tenant, endpoint string) ([]webhooks.Job, error) {
	return r.jobs(`SELECT tenant, endpoint, seq, due FROM webhook_deliveries
		WHERE tenant = $1 AND endpoint = $2 AND due IS NOT NULL ORDER BY due, seq`, tenant, endpoint)
}

func (r webhookRows) Held(tenant, endpoint string, limit int) ([]webhooks.Job, error) {
	return r.jobs(`SELECT tenant, endpoint, seq, due FROM webhook_deliveries
		WHERE due = $1 AND tenant = $2 AND endpoint = $3 ORDER BY seq LIMIT $4`,
		webhooks.Hold.UnixNano(), tenant, endpoint, limit)
}

func (r webhookRows) CountScheduled() (int, error) {
	var n int
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT count(*) FROM webhook_deliveries WHERE due IS NOT NULL").Scan(&n)
	return n, err
}
