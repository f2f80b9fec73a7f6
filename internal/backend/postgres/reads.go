package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// reads sends the one-statement reads of concurrent ViewOne calls (the
// suppression checks of every RCPT and every attempt, an attempt's load,
// AUTH's credential lookup) together: while a few connections
// (readSenders) are out with reads, the reads asked for meanwhile wait and
// then go in one round trip, each with a Sync of its own, so that each
// is still a transaction of its own and a statement that fails (an
// argument the server refuses) fails only its own read. Under load, a
// relay's reads then cost a round trip, and a wake-up of the server's
// process, per handful instead of each, on both sides.
//
// The sender reads each read's rows into memory (a read's rows are few:
// a record and its body at most) and hands them over, so that callers
// scan them in their own goroutines, with a type map of their own, and the
// connection goes back to the pool as soon as the round trip is read.
type reads struct {
	db *DB
	waiting[*readCall]
}

const (
	// readSenders is how many connections carry gathered reads at once.
	readSenders = 4
	// readMax caps the reads of one round trip.
	readMax = 32
)

type readCall struct {
	ctx  context.Context
	sql  string
	args []any
	res  chan readResult
}

type readResult struct {
	rows pgx.Rows
	err  error
	// panicked: encoding the read's arguments panicked with panicValue,
	// which its caller panics with.
	panicked   bool
	panicValue any
}

// query runs sql with the reads gathered with it and returns its rows,
// which the caller must close.
func (r *reads) query(ctx context.Context, sql string, args []any) (pgx.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &readCall{ctx: ctx, sql: sql, args: args, res: make(chan readResult, 1)}
	if r.add(c, readSenders) {
		go r.send()
	}
	select {
	case res := <-c.res:
		if res.panicked {
			panic(res.panicValue)
		}
		return res.rows, res.err
	case <-ctx.Done():
		// The round trip may be waiting for a connection on behalf of
		// reads without a deadline; a read has nothing to wait for
		// (its result, if it comes, is dropped).
		return nil, fmt.Errorf("postgres: %w", ctx.Err())
	}
}

// send carries gathered reads while there are any.
func (r *reads) send() { r.work(readMax, r.run) }

// run sends calls on one connection in one round trip and hands each
// caller its rows in turn. Every call gets exactly one result, whatever
// happens (a panic here included: its callers would wait for ever).
func (r *reads) run(calls []*readCall) {
	ctxs := make([]context.Context, len(calls))
	for i, c := range calls {
		ctxs[i] = c.ctx
	}
	ctx, cancel := latestContext(ctxs)
	defer cancel()
	given := make([]bool, len(calls))
	give := func(i int, res readResult) {
		if !given[i] {
			given[i] = true
			calls[i].res <- res
		}
	}
	fail := func(err error) {
		for i := range calls {
			give(i, readResult{err: err})
		}
	}
	defer func() {
		if p := recover(); p != nil {
			r.db.log.Error("postgres: a round trip of gathered reads panicked", "panic", p, "stack", string(debug.Stack()))
			fail(fmt.Errorf("postgres: a round trip of gathered reads panicked: %v", p))
		}
	}()
	pc, err := r.db.pool.Acquire(ctx)
	if err != nil {
		fail(err)
		return
	}
	defer pc.Release()
	conn := pc.Conn()
	// The statements are prepared once per connection (Prepare keeps
	// them by their text), which pgx's own cache would do for a Query.
	sds := make([]*pgconn.StatementDescription, len(calls))
	failed := make([]error, len(calls))
	for i, c := range calls {
		if sds[i], failed[i] = conn.Prepare(ctx, c.sql, c.sql); failed[i] != nil && isConnLoss(failed[i]) {
			fail(failed[i])
			return
		}
	}
	var eqb pgx.ExtendedQueryBuilder
	sent := make([]bool, len(calls))
	pl := conn.PgConn().StartPipeline(ctx)
	for i, c := range calls {
		if failed[i] != nil {
			give(i, readResult{err: failed[i]})
			continue
		}
		if p, err := build(&eqb, conn.TypeMap(), sds[i], c.args); p != nil {
			// The caller's to panic with, in its own goroutine.
			give(i, readResult{panicked: true, panicValue: p})
			continue
		} else if err != nil {
			give(i, readResult{err: err})
			continue
		}
		// Bind's values are written out at once; its result formats are
		// kept until the result comes (as pgx's batches copy them).
		pl.SendQueryStatement(sds[i], eqb.ParamValues, eqb.ParamFormats, slices.Clone(eqb.ResultFormats))
		pl.SendPipelineSync()
		sent[i] = true
	}
	if err := pl.Flush(); err != nil {
		_ = pl.Close()
		fail(err)
		return
	}
	for i := range calls {
		if !sent[i] {
			continue
		}
		res, err := pl.GetResults()
		switch rr, ok := res.(*pgconn.ResultReader); {
		case err != nil:
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				_ = pl.Close()
				fail(err) // the connection, not the statement
				return
			}
			give(i, readResult{err: err})
		case ok:
			out := rr.Read()
			var pe *pgconn.PgError
			switch {
			case out.Err == nil:
				give(i, readResult{rows: &bufferedRows{res: out, i: -1}})
			case errors.As(out.Err, &pe):
				give(i, readResult{err: out.Err})
			default:
				_ = pl.Close()
				fail(out.Err)
				return
			}
		default:
			_ = pl.Close()
			fail(errors.New("postgres: a gathered read's results out of step"))
			return
		}
		if _, err := pl.GetResults(); err != nil { // its Sync
			_ = pl.Close()
			fail(err)
			return
		}
	}
	if err := pl.Close(); err != nil {
		r.db.log.Debug("postgres: closing a pipeline of reads", "err", err)
	}
}

// build is eqb.Build, reporting a panic of an argument's encoding (a
// caller's driver.Valuer, say) instead of passing it on to the sender.
func build(eqb *pgx.ExtendedQueryBuilder, m *pgtype.Map, sd *pgconn.StatementDescription, args []any) (panicked any, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return nil, eqb.Build(m, sd, args)
}

// bufferedRows are a gathered read's rows, read into memory: pgx.Rows
// over them, decoded with a type map of their own (a connection's is not
// safe for use by several goroutines, and the connection is back in the
// pool by then).
type bufferedRows struct {
	res    *pgconn.Result
	i      int // the current row; -1 before the first
	m      *pgtype.Map
	closed bool
	err    error
}

// typeMaps are the type maps bufferedRows decode with; building one is
// not cheap.
var typeMaps = sync.Pool{New: func() any { return pgtype.NewMap() }}

func (b *bufferedRows) Close() {
	if !b.closed {
		b.closed = true
		if b.m != nil {
			typeMaps.Put(b.m)
			b.m = nil
		}
	}
}

func (b *bufferedRows) Err() error                                   { return b.err }
func (b *bufferedRows) CommandTag() pgconn.CommandTag                { return b.res.CommandTag }
func (b *bufferedRows) FieldDescriptions() []pgconn.FieldDescription { return b.res.FieldDescriptions }
func (b *bufferedRows) Conn() *pgx.Conn                              { return nil }

func (b *bufferedRows) Next() bool {
	if b.closed {
		return false
	}
	b.i++
	if b.i >= len(b.res.Rows) {
		b.Close()
		return false
	}
	return true
}

func (b *bufferedRows) row() ([][]byte, error) {
	if b.closed || b.i < 0 || b.i >= len(b.res.Rows) {
		return nil, errors.New("postgres: no current row")
	}
	b.TypeMap()
	return b.res.Rows[b.i], nil
}

func (b *bufferedRows) Scan(dest ...any) error {
	values, err := b.row()
	if err == nil {
		err = pgx.ScanRow(b.m, b.res.FieldDescriptions, values, dest...)
	}
	if err != nil {
		b.err = err
		b.Close()
	}
	return err
}

func (b *bufferedRows) Values() ([]any, error) {
	values, err := b.row()
	if err != nil {
		return nil, err
	}
	out := make([]any, len(values))
	dest := make([]any, len(values))
	for i := range out {
		dest[i] = &out[i]
	}
	if err := pgx.ScanRow(b.m, b.res.FieldDescriptions, values, dest...); err != nil {
		return nil, err
	}
	return out, nil
}

func (b *bufferedRows) TypeMap() *pgtype.Map {
	if b.m == nil {
		b.m = typeMaps.Get().(*pgtype.Map)
	}
	return b.m
}

func (b *bufferedRows) RawValues() [][]byte {
	if b.i < 0 || b.i >= len(b.res.Rows) {
		return nil
	}
	return b.res.Rows[b.i]
}

// latestContext is a context with the values of the first of ctxs and
// the latest of their deadlines (none if one has none); the end of one
// of them does not end it.
func latestContext(ctxs []context.Context) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(ctxs[0])
	var latest time.Time
	for _, c := range ctxs {
		d, ok := c.Deadline()
		if !ok {
			return context.WithCancel(ctx)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(ctx, latest)
}
