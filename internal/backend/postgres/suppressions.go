package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/suppression"
)

// suppressionRows is suppression.Rows in PostgreSQL (tables suppressions
// and soft_bounces, migration 0002). Keys sort as suppression.Key says:
// addr_key (bytea, bytewise), scope (COLLATE "C", bytewise), reason (its
// code), so List's cursors mean the same on both backends.
//
// A write in Update's SERIALIZABLE transaction needs no explicit lock to
// make Add's read-then-write (is the entry there? then write it and its
// events) safe against a concurrent Add of the same entry: one of the two
// gets a serialization failure and runs again, and then finds the entry.
// In the queue's locking transactions (a bounce recorded with its
// delivery), Get and History read FOR UPDATE, and a row they found
// missing is inserted without ON CONFLICT: a concurrent insert of it
// makes the later transaction run again (insertRace), so it too finds
// the row instead of overwriting it.
type suppressionRows struct{ t *Tx }

const entryCols = "tenant, addr_key, scope, reason, address, channel, message_id, link, created_at, evidence"

func (r suppressionRows) query(sql string, args ...any) ([]suppression.Row, error) {
	rows, err := r.t.tx.Query(r.t.ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanEntry)
}

func scanEntry(row pgx.CollectableRow) (suppression.Row, error) {
	var out suppression.Row
	var key []byte
	var code int16
	var evidence []byte
	e := &out.Entry
	if err := row.Scan(&e.Tenant, &key, &e.List, &code, &e.Address, &e.Channel, &e.MessageID, &e.Link, &e.Time, &evidence); err != nil {
		return out, err
	}
	reason, ok := suppression.ReasonOfCode(byte(code))
	if len(key) != suppression.HashLen || !ok {
		return out, fmt.Errorf("suppression row %x of %s: %w", key, e.Tenant, suppression.ErrCorrupt)
	}
	copy(out.Hash[:], key)
	e.Reason, e.Time = reason, e.Time.UTC()
	if evidence != nil {
		var ev []suppression.SoftBounce
		if err := json.Unmarshal(evidence, &ev); err != nil {
			return out, fmt.Errorf("suppression row %x of %s: evidence: %w", key, e.Tenant, err)
		}
		e.Evidence = &ev
	}
	return out, nil
}

func hashes(hs []suppression.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func (r suppressionRows) Entries(tenant string, hs ...suppression.Hash) ([]suppression.Row, error) {
	return r.query("SELECT "+entryCols+" FROM suppressions WHERE tenant = $1 AND addr_key = ANY($2) ORDER BY addr_key, scope, reason",
		tenant, hashes(hs))
}

func (r suppressionRows) Get(tenant string, k suppression.Key) (suppression.Entry, bool, error) {
	rows, err := r.query("SELECT "+entryCols+" FROM suppressions WHERE tenant = $1 AND addr_key = $2 AND scope = $3 AND reason = $4"+r.t.forUpdate(),
		tenant, k.Hash[:], k.Scope, int16(k.Reason.Code()))
	if err != nil {
		return suppression.Entry{}, false, err
	}
	if len(rows) == 0 {
		r.t.missing("suppressions", entryKey(tenant, k)...)
		return suppression.Entry{}, false, nil
	}
	return rows[0].Entry, true, nil
}

func entryArgs(row suppression.Row) ([]any, error) {
	e := row.Entry
	var evidence []byte
	if e.Evidence != nil {
		var err error
		if evidence, err = json.Marshal(*e.Evidence); err != nil {
			return nil, err
		}
	}
	return []any{e.Tenant, row.Hash[:], e.List, int16(e.Reason.Code()), e.Address, e.Channel, e.MessageID, e.Link, e.Time, evidence}, nil
}

const insertEntry = "INSERT INTO suppressions (" + entryCols + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"

// entryKey is an entry's primary key, for Tx.missing.
func entryKey(tenant string, k suppression.Key) [][]byte {
	return [][]byte{[]byte(tenant), k.Hash[:], []byte(k.Scope), {k.Reason.Code()}}
}

func (r suppressionRows) Put(row suppression.Row) error {
	args, err := entryArgs(row)
	if err != nil {
		return err
	}
	if r.t.wasMissing("suppressions", entryKey(row.Entry.Tenant, suppression.Key{Hash: row.Hash, Scope: row.Entry.List, Reason: row.Entry.Reason})...) {
		_, err = r.t.tx.Exec(r.t.ctx, insertEntry, args...)
		return insertRace(err)
	}
	_, err = r.t.tx.Exec(r.t.ctx, insertEntry+` ON CONFLICT (tenant, addr_key, scope, reason) DO UPDATE SET
		address = EXCLUDED.address, channel = EXCLUDED.channel, message_id = EXCLUDED.message_id,
		link = EXCLUDED.link, created_at = EXCLUDED.created_at, evidence = EXCLUDED.evidence`, args...)
	return err
}

func (r suppressionRows) Delete(tenant string, k suppression.Key) error {
	_, err := r.t.tx.Exec(r.t.ctx, "DELETE FROM suppressions WHERE tenant = $1 AND addr_key = $2 AND scope = $3 AND reason = $4",
		tenant, k.Hash[:], k.Scope, int16(k.Reason.Code()))
	return err
}

// Insert sends its rows in one batch (one round trip), each an INSERT
// that does nothing on a taken key, then reads the taken ones.
func (r suppressionRows) Insert(rs []suppression.Row) ([]suppression.Row, error) {
	var b pgx.Batch
	for _, row := range rs {
		args, err := entryArgs(row)
		if err != nil {
			return nil, err
		}
		b.Queue(insertEntry+" ON CONFLICT DO NOTHING", args...)
	}
	res := r.t.tx.SendBatch(r.t.ctx, &b)
	var taken []suppression.Row
	for _, row := range rs {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return nil, err
		}
		if tag.RowsAffected() == 0 {
			taken = append(taken, row)
		}
	}
	if err := res.Close(); err != nil {
		return nil, err
	}
	existing := make([]suppression.Row, 0, len(taken))
	for _, row := range taken {
		e, ok, err := r.Get(row.Entry.Tenant, row.Key())
		if err != nil {
			return nil, err
		}
		if ok {
			existing = append(existing, suppression.Row{Hash: row.Hash, Entry: e})
		}
	}
	return existing, nil
}

func (r suppressionRows) Page(tenant, scope string, after *suppression.Key, limit int) ([]suppression.Row, *suppression.Key, error) {
	var k suppression.Key // the zero key sorts before every real one
	hash := []byte{}
	if after != nil {
		k, hash = *after, after.Hash[:]
	}
	rows, err := r.query("SELECT "+entryCols+` FROM suppressions
		WHERE tenant = $1 AND ($2 = '' OR scope = $2) AND (addr_key, scope, reason) > ($3, $4, $5)
		ORDER BY addr_key, scope, reason LIMIT $6`,
		tenant, scope, hash, k.Scope, int16(k.Reason.Code()), limit+1)
	if err != nil || len(rows) <= limit {
		return rows, nil, err
	}
	next := rows[limit-1].Key()
	return rows[:limit], &next, nil
}

func (r suppressionRows) Everywhere(h suppression.Hash) ([]suppression.Row, error) {
	return r.query("SELECT "+entryCols+" FROM suppressions WHERE addr_key = $1 ORDER BY tenant, scope, reason", h[:])
}

func (r suppressionRows) DeleteTenant(tenant string, max int) (int, error) {
	n := 0
	for _, table := range []string{"suppressions", "soft_bounces"} {
		tag, err := r.t.tx.Exec(r.t.ctx, "DELETE FROM "+table+" WHERE ctid IN (SELECT ctid FROM "+table+" WHERE tenant = $1 LIMIT $2)",
			tenant, max-n)
		if err != nil {
			return n, err
		}
		n += int(tag.RowsAffected())
		if n == max {
			break
		}
	}
	return n, nil
}

func scanHistory(row pgx.CollectableRow) (suppression.History, error) {
	var h suppression.History
	var bounces []byte
	if err := row.Scan(&h.Tenant, &bounces, &h.Delivered, &h.Updated); err != nil {
		return h, err
	}
	h.Updated = h.Updated.UTC()
	if err := json.Unmarshal(bounces, &h.Bounces); err != nil {
		return h, fmt.Errorf("soft bounce history of %s: %w", h.Tenant, err)
	}
	return h, nil
}

func (r suppressionRows) histories(sql string, args ...any) ([]suppression.History, error) {
	rows, err := r.t.tx.Query(r.t.ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanHistory)
}

func (r suppressionRows) History(tenant string, h suppression.Hash) (suppression.History, bool, error) {
	hs, err := r.histories("SELECT tenant, bounces, delivered, updated_at FROM soft_bounces WHERE tenant = $1 AND addr_key = $2"+r.t.forUpdate(), tenant, h[:])
	if err != nil {
		return suppression.History{}, false, err
	}
	if len(hs) == 0 {
		r.t.missing("soft_bounces", []byte(tenant), h[:])
		return suppression.History{}, false, nil
	}
	return hs[0], true, nil
}

func (r suppressionRows) PutHistory(h suppression.Hash, hist suppression.History) error {
	bounces, err := json.Marshal(hist.Bounces)
	if err != nil {
		return err
	}
	const insert = `INSERT INTO soft_bounces (tenant, addr_key, bounces, delivered, updated_at)
		VALUES ($1, $2, $3, $4, $5)`
	if r.t.wasMissing("soft_bounces", []byte(hist.Tenant), h[:]) {
		_, err = r.t.tx.Exec(r.t.ctx, insert, hist.Tenant, h[:], bounces, hist.Delivered, hist.Updated)
		return insertRace(err)
	}
	_, err = r.t.tx.Exec(r.t.ctx, insert+` ON CONFLICT (tenant, addr_key) DO UPDATE SET
		bounces = EXCLUDED.bounces, delivered = EXCLUDED.delivered, updated_at = EXCLUDED.updated_at`,
		hist.Tenant, h[:], bounces, hist.Delivered, hist.Updated)
	return err
}

// NoteDelivery implements suppression.DeliveryNoter: one deferred UPDATE
// (pipe.later). At READ COMMITTED it locks the row it changes and
// computes from its latest version, as History's read FOR UPDATE and
// PutHistory would.
func (r suppressionRows) NoteDelivery(tenant string, h suppression.Hash, message string, at time.Time) error {
	r.t.tx.later(`UPDATE soft_bounces SET
		bounces = CASE WHEN delivered <> '' THEN 'null'::jsonb ELSE bounces END,
		delivered = $3, updated_at = greatest(updated_at, $4)
		WHERE tenant = $1 AND addr_key = $2`, tenant, h[:], message, at)
	return nil
}

func (r suppressionRows) DeleteHistory(tenant string, h suppression.Hash) error {
	_, err := r.t.tx.Exec(r.t.ctx, "DELETE FROM soft_bounces WHERE tenant = $1 AND addr_key = $2", tenant, h[:])
	return err
}

func (r suppressionRows) HistoriesEverywhere(h suppression.Hash) ([]suppression.History, error) {
	return r.histories("SELECT tenant, bounces, delivered, updated_at FROM soft_bounces WHERE addr_key = $1 ORDER BY tenant", h[:])
}

// PurgeHistories finds the old histories by the index on updated_at, so
// it needs no position: from is ignored, and next is "more" while a full
// batch was deleted.
func (r suppressionRows) PurgeHistories(cutoff time.Time, _ string, max int) (int, string, error) {
	tag, err := r.t.tx.Exec(r.t.ctx, `DELETE FROM soft_bounces WHERE ctid IN
		(SELECT ctid FROM soft_bounces WHERE updated_at < $1 LIMIT $2)`, cutoff, max)
	n := int(tag.RowsAffected())
	if err != nil || n < max {
		return n, "", err
	}
	return n, "more", nil
}
