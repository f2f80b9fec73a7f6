package postgres

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/heedmail/heed/internal/queue"
)

// The schedule's leases (queue.LeaseRows, migration 0010): several nodes
// on one database claim due entries instead of reading them, so that no
// recipient is attempted by two live nodes at once.
//
// A claim runs in the locking runner's READ COMMITTED transaction:
//
//  1. It takes claimKey, a transaction-level advisory lock: claims take
//     turns, so the live leases a claim counts per domain are all there
//     are, and delivery.domain_concurrency holds for the cluster. The
//     lock is held for a few statements, never across an attempt.
//  2. It selects due entries under no live lease FOR UPDATE SKIP LOCKED:
//     an entry a Record is deleting, or a Hold moving, is passed over
//     instead of waited for.
//  3. It writes the lease (node, until) on the entries taken.
//
// The claim commits with synchronous_commit off: its commit is visible to
// the other nodes at once but does not wait for its WAL flush, so claims
// (one per wake-up of each node's scheduler) do not queue on the disk
// behind the lock. Should PostgreSQL itself crash before the flush, the
// lease is lost and another node may attempt the entry too: a duplicate,
// which SMTP's at-least-once delivery allows, never a loss.
//
// Lease times are the database's clock (now(), the transaction's start),
// so the nodes' clocks need not agree.
//
// The schedule's primary key starts with due, so a lookup by recipient
// would read the whole schedule: the statements on a node's leases say
// lease_until IS NOT NULL, which lets PostgreSQL read the partial index
// of the leased entries (a few per worker of each node) instead.

// claimPage is the first page a claim reads.
const claimPage = 16

// claimKey is the bigint advisory lock of claims ("heed.lse"); the
// two-int4 form is the event order's (events.go).
const claimKey int64 = 0x686565642e6c7365

func (r queueRows) Leased() (map[string]int, error) {
	// With the count, in one round trip (pipe.later). The count reads the
	// index of leased entries, where an entry Record deleted stays, with
	// its lease still to run, until VACUUM: an index scan marks such
	// entries dead as it passes them, so that the next claims skip them,
	// but a bitmap scan, which the planner picks for a schedule that was
	// empty when the statement was first planned, reads every one of them
	// on every claim (a minute of deliveries at the default lease), and a
	// scan of the whole schedule, which it picks when its statistics say
	// the schedule is small, reads the backlog's entries too. Both are
	// off for the claim's transaction: its statements have their indexes.
	r.t.tx.later(`SELECT set_config('synchronous_commit', 'off', true), set_config('enable_bitmapscan', 'off', true),
		set_config('enable_seqscan', 'off', true), pg_advisory_xact_lock($1)`, claimKey)
	rows, err := r.t.tx.Query(r.t.ctx, `SELECT domain, count(*) FROM schedule
		WHERE lease_until IS NOT NULL AND lease_until > now() GROUP BY domain`)
	if err != nil {
		return nil, err
	}
	active := map[string]int{}
	var domain string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&domain, &n}, func() error {
		active[domain] = n
		return nil
	})
	return active, err
}

func (r queueRows) Claimable(now time.Time, max int, fn func(queue.Job) bool) (time.Time, error) {
	var last *queue.Job
	// Every row a page returns is locked (a row lock is a write of its
	// tuple, and WAL), though a claim usually takes a few, as many as its
	// node has idle workers: the first page is small and the next ones
	// grow.
	page := claimPage
	for passed := 0; passed < max; page = min(2*page, duePage) {
		n := min(page, max-passed)
		args := []any{now, n}
		where := ""
		if last != nil {
			where = " AND (due, message_id, idx) > ($3, $4, $5)"
			args = append(args, last.Due, last.MessageID, last.Index)
		}
		rows, err := r.t.tx.Query(r.t.ctx, `SELECT due, message_id, idx, domain, ctid FROM schedule
			WHERE due <= $1 AND (lease_until IS NULL OR lease_until <= now())`+where+`
			ORDER BY due, message_id, idx LIMIT $2 FOR UPDATE SKIP LOCKED`, args...)
		if err != nil {
			return time.Time{}, err
		}
		jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.Job, error) {
			var j queue.Job
			var tid pgtype.TID
			if err := row.Scan(&j.Due, &j.MessageID, &j.Index, &j.Domain, &tid); err != nil {
				return j, err
			}
			if r.t.claimed == nil {
				r.t.claimed = map[string]pgtype.TID{}
			}
			r.t.claimed[jobKey(j)] = tid
			return j, nil
		})
		if err != nil {
			return time.Time{}, err
		}
		for i := range jobs {
			passed++
			if !fn(jobs[i]) {
				return r.nextDue(now)
			}
		}
		if len(jobs) < n {
			break
		}
		last = &jobs[len(jobs)-1]
	}
	return r.nextDue(now)
}

// nextDue is the earliest entry due after now, on the primary key.
func (r queueRows) nextDue(now time.Time) (time.Time, error) {
	var next *time.Time
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT min(due) FROM schedule WHERE due > $1", now).Scan(&next)
	if err != nil || next == nil {
		return time.Time{}, err
	}
	return *next, nil
}

// jobKeys are jobs as the arrays unnest() takes.
func jobKeys(jobs []queue.Job) (dues []time.Time, ids []string, idxs []int32) {
	for _, j := range jobs {
		dues = append(dues, j.Due)
		ids = append(ids, j.MessageID)
		idxs = append(idxs, int32(j.Index))
	}
	return dues, ids, idxs
}

// jobKey is a job's key in Tx.claimed.
func jobKey(j queue.Job) string {
	return j.Due.UTC().Format(time.RFC3339Nano) + "\x00" + j.MessageID + "\x00" + strconv.Itoa(j.Index)
}

// Lease writes the lease on the rows Claimable locked in this
// transaction by their tuple ids (a TID scan: an UPDATE that matched the
// keys against unnest() was planned, on a schedule still empty when its
// statement was first prepared, as a scan of the whole schedule, and
// kept that plan as the schedule grew). Jobs not claimed here are found
// by their keys.
func (r queueRows) Lease(node string, d time.Duration, jobs []queue.Job) error {
	tids := make([]pgtype.TID, 0, len(jobs))
	for _, j := range jobs {
		tid, ok := r.t.claimed[jobKey(j)]
		if !ok {
			tids = nil
			break
		}
		tids = append(tids, tid)
	}
	if tids != nil {
		return r.exec(`UPDATE schedule SET lease_node = $1, lease_until = now() + $2 * interval '1 millisecond'
			WHERE ctid = ANY($3::tid[])`, node, d.Milliseconds(), tids)
	}
	dues, ids, idxs := jobKeys(jobs)
	return r.exec(`UPDATE schedule SET lease_node = $1, lease_until = now() + $2 * interval '1 millisecond'
		WHERE (due, message_id, idx) IN (SELECT * FROM unnest($3::timestamptz[], $4::text[], $5::integer[]))`,
		node, d.Milliseconds(), dues, ids, idxs)
}

func (r queueRows) Renew(node string, d time.Duration, jobs []queue.Job) error {
	_, ids, idxs := jobKeys(jobs)
	// Entries locked by another transaction are passed over, not waited
	// for: a record of this node's deleting its entry (a batch of them
	// holds its rows to its COMMIT), or a claim passing it by. Waiting, the
	// renewal of every lease of the node could run out of its time, and
	// the leases with it, while the records commit; an entry passed over
	// is renewed at the next tick, a third of the lease later.
	return r.exec(`UPDATE schedule SET lease_until = now() + $2 * interval '1 millisecond'
		WHERE ctid = ANY (ARRAY(SELECT ctid FROM schedule
			WHERE lease_until IS NOT NULL AND lease_node = $1 AND (message_id, idx) IN (SELECT * FROM unnest($3::text[], $4::integer[]))
			FOR UPDATE SKIP LOCKED))`,
		node, d.Milliseconds(), ids, idxs)
}

func (r queueRows) UnleaseAll(node string) (int, error) {
	tag, err := r.t.tx.Exec(r.t.ctx, "UPDATE schedule SET lease_node = NULL, lease_until = NULL WHERE lease_until IS NOT NULL AND lease_node = $1", node)
	return int(tag.RowsAffected()), err
}

func (r queueRows) Unlease(node string, jobs []queue.Job) error {
	_, ids, idxs := jobKeys(jobs)
	return r.exec(`UPDATE schedule SET lease_node = NULL, lease_until = NULL
		WHERE lease_until IS NOT NULL AND lease_node = $1 AND (message_id, idx) IN (SELECT * FROM unnest($2::text[], $3::integer[]))`,
		node, ids, idxs)
}
