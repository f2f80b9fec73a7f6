package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pipe is the backend's transaction on one connection, sending its
// statements in as few round trips as the code it runs allows: BEGIN
// goes with the first statement, and the writes whose results the code
// does not wait for (later) go with the next statement that reads, or
// with COMMIT, in one batch (pgx's pipeline of the extended protocol).
// A message's accept is then one round trip, and a delivery's record a
// few, where each statement was one.
//
// A deferred write that fails makes the statement that carried it fail
// (the transaction is aborted there), which is the error the code sees.
// pipe has the methods of pgx.Tx the rows use; it is not safe for
// concurrent use.
type pipe struct {
	conn  *pgxpool.Conn
	begin string // the BEGIN statement, sent with the first batch ("": none)
	begun bool   // BEGIN has gone to the server, or there is none
	queue []deferred
	// merge: the writes queued with a multi statement are sent as one
	// per statement (mergeQueue): a batch's (batch.go).
	merge bool
	// reads, if set, carries this pipe's queries (ViewOne's, reads.go);
	// conn is then taken from the pool only for anything else, and
	// released by release.
	reads *reads
	pool  *pgxpool.Pool
}

// connect takes a connection for a pipe of gathered reads that needs one
// of its own.
func (p *pipe) connect(ctx context.Context) error {
	if p.conn != nil {
		return nil
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	p.conn = conn
	return nil
}

// release gives back the connection connect took.
func (p *pipe) release() {
	if p.reads != nil && p.conn != nil {
		p.conn.Release()
		p.conn = nil
	}
}

// deferred is a statement waiting for the next batch; scan, if set,
// reads its one row when the batch's results come back.
type deferred struct {
	sql  string
	args []any
	scan func(pgx.Row) error
	// multi, if set, is the statement that writes many such rows, with
	// one array per argument (laterRow).
	multi string
	// scanRows reads a merged statement's rows.
	scanRows func(pgx.Rows) error
}

// beginSQL is the BEGIN of opts; "" for autocommit (no transaction
// block: each statement on its own).
func beginSQL(opts pgx.TxOptions) string {
	if opts == autocommit {
		return ""
	}
	s := "BEGIN ISOLATION LEVEL " + string(opts.IsoLevel)
	if opts.AccessMode != "" {
		s += " " + string(opts.AccessMode)
	}
	return s
}

// later queues a write whose outcome the code does not need before its
// next read.
func (p *pipe) later(sql string, args ...any) {
	p.queue = append(p.queue, deferred{sql: sql, args: args})
}

// laterRow is later for a write of one row that a merging pipe may send
// with others as multi, whose parameters are the arrays of each of the
// rows' args in turn (batch.go).
func (p *pipe) laterRow(multi, sql string, args ...any) {
	p.queue = append(p.queue, deferred{sql: sql, args: args, multi: multi})
}

// laterRowScan is laterRow for a statement that returns one row, read
// by scan when the batch that carries it comes back (a RETURNING the code
// needs only after the transaction); multi returns one bigint per row,
// increasing with the rows' order.
func (p *pipe) laterRowScan(scan func(pgx.Row) error, multi, sql string, args ...any) {
	p.queue = append(p.queue, deferred{sql: sql, args: args, scan: scan, multi: multi})
}

// pending reports whether anything must go to the server before the
// next statement: BEGIN or deferred writes.
func (p *pipe) pending() bool { return !p.begun || len(p.queue) > 0 }

// send sends BEGIN (if not yet sent), the queue and then last (if not
// nil) in one batch, and reads the queue's results. The batch's
// results are left open on last: the caller reads them and closes br.
func (p *pipe) send(ctx context.Context, last *deferred) (br pgx.BatchResults, err error) {
	if p.reads != nil {
		if err := p.connect(ctx); err != nil {
			return nil, err
		}
	}
	queue := p.queue
	p.queue = nil
	if p.merge {
		queue = mergeQueue(queue)
	}
	var b pgx.Batch
	if !p.begun {
		b.Queue(p.begin)
	}
	for _, d := range queue {
		b.Queue(d.sql, d.args...)
	}
	if last != nil {
		b.Queue(last.sql, last.args...)
	}
	br = p.conn.SendBatch(ctx, &b)
	fail := func(err error) (pgx.BatchResults, error) {
		_ = br.Close()
		return nil, err
	}
	if !p.begun {
		if _, err := br.Exec(); err != nil {
			return fail(err)
		}
		p.begun = true
	}
	for _, d := range queue {
		switch {
		case d.scanRows != nil:
			var rows pgx.Rows
			if rows, err = br.Query(); err == nil {
				err = d.scanRows(rows)
			}
		case d.scan != nil:
			err = d.scan(br.QueryRow())
		default:
			_, err = br.Exec()
		}
		if err != nil {
			return fail(fmt.Errorf("%w (in %.60q)", err, d.sql))
		}
	}
	return br, nil
}

// flush sends what is pending, on its own.
func (p *pipe) flush(ctx context.Context) error {
	if !p.pending() {
		return nil
	}
	br, err := p.send(ctx, nil)
	if err != nil {
		return err
	}
	return br.Close()
}

// Exec runs sql after what is pending and returns its outcome. Without
// arguments it may hold several statements (simple protocol).
func (p *pipe) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := p.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	if p.reads != nil {
		if err := p.connect(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
	}
	return p.conn.Exec(ctx, sql, args...)
}

// Query runs sql in the batch of what is pending.
func (p *pipe) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if p.reads != nil && !p.pending() && p.conn == nil {
		return p.reads.query(ctx, sql, args)
	}
	if !p.pending() {
		return p.conn.Query(ctx, sql, args...)
	}
	br, err := p.send(ctx, &deferred{sql: sql, args: args})
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// QueryRow is Query for one row, as pgx's.
func (p *pipe) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := p.Query(ctx, sql, args...)
	return &pipeRow{rows: rows, err: err}
}

// SendBatch sends b after what is pending.
func (p *pipe) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := p.flush(ctx); err != nil {
		return failedBatch{err}
	}
	if p.reads != nil {
		if err := p.connect(ctx); err != nil {
			return failedBatch{err}
		}
	}
	return p.conn.SendBatch(ctx, b)
}

// CopyFrom copies after what is pending.
func (p *pipe) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := p.flush(ctx); err != nil {
		return 0, err
	}
	if p.reads != nil {
		if err := p.connect(ctx); err != nil {
			return 0, err
		}
	}
	return p.conn.CopyFrom(ctx, table, cols, src)
}

// commit sends what is pending and COMMIT, in one batch. committing
// reports that err may have come from COMMIT or after it was sent (the
// outcome is unknown); a transaction that sent nothing commits nothing.
func (p *pipe) commit(ctx context.Context) (committing bool, err error) {
	if !p.begun && len(p.queue) == 0 {
		return false, nil
	}
	if p.begin == "" {
		// Autocommit: each statement committed itself; a write left
		// pending goes alone.
		return len(p.queue) > 0, p.flush(ctx)
	}
	br, err := p.send(ctx, &deferred{sql: "COMMIT"})
	if err != nil {
		// A statement before COMMIT failed: the server skipped the
		// rest, COMMIT included, unless the connection went, when no
		// one knows how far it got.
		return isConnLoss(err), err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		p.begun = false
		if tag.String() == "ROLLBACK" {
			// The transaction was aborted by a statement whose error
			// the code did not return, and PostgreSQL answers its
			// COMMIT with ROLLBACK and no error: nothing was committed,
			// as pgx's Tx.Commit reports.
			return false, pgx.ErrTxCommitRollback
		}
	}
	return true, err
}

// rollback ends a transaction that failed or was not committed.
func (p *pipe) rollback(ctx context.Context) {
	p.queue = nil
	if p.begun && p.begin != "" && !p.conn.Conn().IsClosed() {
		// pgxpool destroys a connection returned inside a transaction,
		// should this fail too.
		_, _ = p.conn.Exec(ctx, "ROLLBACK")
	}
	p.begun = false
}

// batchRows closes the batch when its rows are closed.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if !r.closed {
		r.closed = true
		_ = r.br.Close()
	}
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// pipeRow is pgx's Row over Query's rows.
type pipeRow struct {
	rows pgx.Rows
	err  error
}

func (r *pipeRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

// failedBatch is the results of a batch that could not be sent.
type failedBatch struct{ err error }

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) Query() (pgx.Rows, error)         { return nil, f.err }
func (f failedBatch) QueryRow() pgx.Row                { return &pipeRow{err: f.err} }
func (f failedBatch) Close() error                     { return f.err }
func (f failedBatch) Tx() pgx.Tx                       { return nil }

// runReads is runPipe for ViewOne: fn's queries go with the reads of
// concurrent calls (reads.go), on no transaction of their own.
func (db *DB) runReads(ctx context.Context, fn func(*pipe) error) error {
	return db.retry(ctx, func() (bool, error) {
		p := &pipe{begun: true, reads: &db.reads, pool: db.pool}
		defer p.release()
		err := fn(p)
		if err == nil {
			_, err = p.commit(ctx) // a write left pending (none should be)
		}
		return false, err
	})
}

// runPipe is DB.run for the backend's transactions: fn works through a
// pipe on a connection of the pool, committed with what it left pending.
func (db *DB) runPipe(ctx context.Context, opts pgx.TxOptions, fn func(*pipe) error) error {
	begin := beginSQL(opts)
	return db.retry(ctx, func() (bool, error) {
		conn, err := db.pool.Acquire(ctx)
		if err != nil {
			return false, err
		}
		defer conn.Release()
		p := &pipe{conn: conn, begin: begin, begun: begin == ""}
		committing, err := func() (bool, error) {
			if err := fn(p); err != nil {
				return false, err
			}
			return p.commit(ctx)
		}()
		if err != nil && !committing {
			// After a failed statement or a lost connection there is
			// nothing to keep; the error that matters is err.
			p.rollback(ctx)
		}
		return committing, err
	})
}
