package postgres

import (
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/txn"
)

// repRows is reputation.Rows in PostgreSQL (tables reputation_rates and
// reputation_state, migrations 0008 and 0009). Add is one upsert into the
// row of its connection (shard: the server process's id): one row per
// tenant, domain and hour would have every delivery of a tenant wait for
// the previous one's COMMIT on its lock. Buckets sums the shards.
type repRows struct{ t *Tx }

// Reputation implements backend.Tx.
func (t *Tx) Reputation() reputation.Rows { return repRows{t} }

// Reputation returns the runner of the rates and the guard kept by b.
func Reputation(b *Backend) txn.Runner[reputation.Tx] {
	return txn.Narrow(b, func(t backend.Tx) reputation.Tx { return t })
}

func (r repRows) Add(tenant, domain string, hour int64, c reputation.Counts) error {
	r.t.tx.later(`INSERT INTO reputation_rates (tenant, hour, domain, shard, final, hard, delivered, complaints)
		VALUES ($1, $2, $3, pg_backend_pid(), $4, $5, $6, $7)
		ON CONFLICT (tenant, hour, domain, shard) DO UPDATE SET
			final = reputation_rates.final + EXCLUDED.final, hard = reputation_rates.hard + EXCLUDED.hard,
			delivered = reputation_rates.delivered + EXCLUDED.delivered,
			complaints = reputation_rates.complaints + EXCLUDED.complaints`,
		tenant, hour, domain, c.Final, c.HardBounces, c.Delivered, c.Complaints)
	return nil
}

func (r repRows) Buckets(tenant string, from int64) ([]reputation.Bucket, error) {
	rows, err := r.t.tx.Query(r.t.ctx, `SELECT domain, hour, sum(final)::bigint, sum(hard)::bigint, sum(delivered)::bigint, sum(complaints)::bigint
		FROM reputation_rates WHERE tenant = $1 AND hour >= $2 GROUP BY domain, hour`, tenant, from)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (reputation.Bucket, error) {
		var b reputation.Bucket
		err := row.Scan(&b.Domain, &b.Hour, &b.Counts.Final, &b.Counts.HardBounces, &b.Counts.Delivered, &b.Counts.Complaints)
		return b, err
	})
}

func (r repRows) Prune(before int64, limit int) (int, error) {
	tag, err := r.t.tx.Exec(r.t.ctx, `DELETE FROM reputation_rates WHERE (tenant, hour, domain, shard) IN
		(SELECT tenant, hour, domain, shard FROM reputation_rates WHERE hour < $1 LIMIT $2)`, before, limit)
	return int(tag.RowsAffected()), err
}

func (r repRows) State(tenant string) (reputation.State, bool, error) {
	var s reputation.State
	var body []byte
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT body FROM reputation_state WHERE tenant = $1", tenant).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	return s, true, json.Unmarshal(body, &s)
}

func (r repRows) PutState(s reputation.State) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = r.t.tx.Exec(r.t.ctx, `INSERT INTO reputation_state (tenant, paused, body) VALUES ($1, $2, $3)
		ON CONFLICT (tenant) DO UPDATE SET paused = EXCLUDED.paused, body = EXCLUDED.body`, s.Tenant, s.Paused, string(body))
	if err != nil {
		return err
	}
	// The other nodes keep the paused tenants in memory (reputation.Guard).
	return r.t.announce(kindPaused, s.Tenant)
}

func (r repRows) Paused() ([]reputation.State, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT body FROM reputation_state WHERE paused")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (reputation.State, error) {
		var s reputation.State
		var body []byte
		if err := row.Scan(&body); err != nil {
			return s, err
		}
		return s, json.Unmarshal(body, &s)
	})
}

func (r repRows) DeleteTenant(tenant string) error {
	if _, err := r.t.tx.Exec(r.t.ctx, "DELETE FROM reputation_rates WHERE tenant = $1", tenant); err != nil {
		return err
	}
	_, err := r.t.tx.Exec(r.t.ctx, "DELETE FROM reputation_state WHERE tenant = $1", tenant)
	return err
}
