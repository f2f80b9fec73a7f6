package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/suppression"
)

// This file holds what the benchmarks (bench/) need of the server itself:
// only this package may import the driver, and the figures an operator
// sizes a server by (statements, commits and WAL per message) are read
// from the server, not from Heed.

// BenchStats is what the server did for a database between
// StartBenchProbe and Read.
type BenchStats struct {
	// Statements is the number of statements executed in the database
	// (pg_stat_statements, utility statements such as BEGIN and COMMIT
	// included); Commits the transactions committed and Rollbacks those
	// rolled back, conflicts run again included (pg_stat_database).
	Statements, Commits, Rollbacks int64
	// WALBytes is the WAL written by the whole cluster, from the LSN
	// before and after (pg_current_wal_lsn); WALWrites and WALSyncs are
	// pg_stat_wal's wal_write and wal_sync: how many times WAL was written
	// and flushed to disk. Fewer syncs than commits means concurrent
	// commits shared a flush.
	WALBytes, WALWrites, WALSyncs int64
	// Top are the statements that took the most execution time.
	Top []BenchStatement
}

// BenchStatement is one line of pg_stat_statements.
type BenchStatement struct {
	Query   string
	Calls   int64
	TotalMs float64
}

// BenchProbe measures a database over one benchmark run.
type BenchProbe struct {
	dsn string
	lsn string
}

// StartBenchProbe loads pg_stat_statements into the database (the server
// must preload it: shared_preload_libraries) and resets the statistics
// the probe reads. The statistics of WAL and statements are the whole
// cluster's: the benchmark's cluster must serve nothing else meanwhile.
func StartBenchProbe(ctx context.Context, dsn string) (*BenchProbe, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	p := &BenchProbe{dsn: dsn}
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text FROM (
		SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal'), pg_stat_reset()) r`).Scan(&p.lsn)
	if err != nil {
		// Created only on failure, so the common run does not write
		// the catalogue while it measures.
		if _, cerr := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text FROM (
			SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal'), pg_stat_reset()) r`).Scan(&p.lsn)
	}
	return p, err
}

// Read waits (up to a minute) until the database has no session left
// but its own (a backend reports its counters when it ends, so the run's
// pool must be closed first), then reads what the run did.
func (p *BenchProbe) Read(ctx context.Context, top int) (BenchStats, error) {
	var st BenchStats
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		return st, err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		var others int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others)
		if err != nil {
			return st, err
		}
		if others == 0 {
			break
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("postgres: %d sessions of the benchmark's database still open after a minute", others)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(10 * time.Millisecond): // polling a condition, with the deadline above
		}
	}
	// The sessions' statistics reach the shared counters as they exit,
	// and pg_stat_database's snapshot is taken once per transaction.
	if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
		return st, err
	}
	err = conn.QueryRow(ctx, `SELECT
		(SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
			WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat%'),
		(SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
		(SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database()),
		pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint,
		(SELECT wal_write FROM pg_stat_wal), (SELECT wal_sync FROM pg_stat_wal)`, p.lsn).
		Scan(&st.Statements, &st.Commits, &st.Rollbacks, &st.WALBytes, &st.WALWrites, &st.WALSyncs)
	if err != nil {
		return st, err
	}
	rows, err := conn.Query(ctx, `SELECT regexp_replace(s.query, '\s+', ' ', 'g'), s.calls, s.total_exec_time
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
		WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat%'
		ORDER BY s.total_exec_time DESC LIMIT $1`, top)
	if err != nil {
		return st, err
	}
	st.Top, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (BenchStatement, error) {
		var s BenchStatement
		err := r.Scan(&s.Query, &s.Calls, &s.TotalMs)
		return s, err
	})
	return st, err
}

// BenchFillSuppressions writes n suppression entries, row(0) to
// row(n-1), into the empty suppressions table of a migrated database with
// COPY: the indexes are dropped first and built again from their own
// definitions afterwards (sorting once is much quicker than 10 million
// random index inserts), and the table analysed. It is for benchmarks
// only: it bypasses the store's rules and writes no events.
func BenchFillSuppressions(ctx context.Context, dsn string, n int, row func(i int) (suppression.Row, error)) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var full bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM suppressions)").Scan(&full); err != nil {
		return err
	}
	if full {
		return errors.New("postgres: BenchFillSuppressions needs an empty suppressions table")
	}
	var pkName, pkDef string
	err = conn.QueryRow(ctx, `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'suppressions'::regclass AND contype = 'p'`).Scan(&pkName, &pkDef)
	if err != nil {
		return fmt.Errorf("reading the primary key: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes
		WHERE schemaname = current_schema() AND tablename = 'suppressions' AND indexname <> $1`, pkName)
	if err != nil {
		return err
	}
	type index struct{ name, def string }
	idx, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var i index
		return i, r.Scan(&i.name, &i.def)
	})
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE suppressions DROP CONSTRAINT "+pgx.Identifier{pkName}.Sanitize()); err != nil {
		return err
	}
	for _, i := range idx {
		if _, err := conn.Exec(ctx, "DROP INDEX "+pgx.Identifier{i.name}.Sanitize()); err != nil {
			return err
		}
	}
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		r, err := row(i)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		i++
		return entryArgs(r)
	})
	cols := []string{"tenant", "addr_key", "scope", "reason", "address", "channel", "message_id", "link", "created_at", "evidence"}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"suppressions"}, cols, src); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SET maintenance_work_mem = '512MB'"); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "ALTER TABLE suppressions ADD CONSTRAINT "+pgx.Identifier{pkName}.Sanitize()+" "+pkDef); err != nil {
		return err
	}
	for _, i := range idx {
		if _, err := conn.Exec(ctx, i.def); err != nil {
			return err
		}
	}
	_, err = conn.Exec(ctx, "VACUUM (ANALYZE) suppressions")
	return err
}
