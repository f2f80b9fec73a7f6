package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/txn"
)

// The queue's accepts commit together (txn.Batch): each message alone is
// five single-row statements and a COMMIT, and PostgreSQL spends more on
// a statement than on its row. Concurrent accepts instead join one of a
// few transactions at a time (batchTxs): while one commits, the next
// gathers the functions that arrived meanwhile, and its pipe (merge)
// sends their rows of each kind as one statement over arrays (unnest).
// Twenty sessions writing at once then cost a few statements per
// transaction instead of a hundred, and a session waits at most for the
// transaction before its own. The records of attempts (group "record")
// batch alike, in two parts (txn.BatchRead): the reads of a round, each
// of its message FOR UPDATE, go in one round trip, then the round's
// writes; a second record of one message (another recipient) is in the
// next round (rounds), reading what the first wrote. They run in
// message-id order (txn.Batch's key), so that two batches lock shared
// messages in one order and never deadlock. bbolt's group commit
// (store.DB.Update) is the same idea for its single writer.
//
// A transaction of several functions that fails (a function's error, a
// statement's, a conflict past its retries, a panic) is run again
// function by function, each by its caller, in its goroutine and with its
// context, so that each caller gets its own outcome (a panic included)
// and one bad function costs the others nothing but time. A call still
// queued when its context ends is dropped unrun. A lost
// connection is every caller's answer at once: the outcome of its COMMIT
// may be unknown, and running the functions again could write them twice.

const (
	// batchTxs is how many batched transactions run at once, each on a
	// connection of the pool.
	batchTxs = 4
	// batchMax caps the functions in one transaction.
	batchMax = 64
	// mergeBytes caps the values of one merged statement (mergeRows), far
	// below the server's 1 GiB limit on a message, past which it drops
	// the connection: 64 accepts of 25 MB each would otherwise make one
	// statement of 1.6 GB, and every accept of the batch unavailable.
	mergeBytes = 8 << 20
)

// batchers are the Backend's batchers, one per group of txn.Batch.
type batchers struct {
	mu     sync.Mutex
	groups map[string]*batcher
}

func (bs *batchers) of(group string) *batcher {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bt := bs.groups[group]
	if bt == nil {
		if bs.groups == nil {
			bs.groups = map[string]*batcher{}
		}
		bt = &batcher{}
		bs.groups[group] = bt
	}
	return bt
}

// batcher is one group's calls waiting for a transaction.
type batcher struct{ waiting[*batchCall] }

type batchCall struct {
	ctx context.Context
	key string // txn.Batch's: the transaction runs its calls in key order
	fn  func(backend.Tx) error
	// read and write are txn.BatchRead's parts (fn is both, alone): the
	// transaction runs the reads of its calls, then their writes.
	read, write func(backend.Tx) error
	done        chan batchResult // buffered: the worker never waits for the caller
}

// batchResult is a call's outcome, given to its caller.
type batchResult struct {
	err error
	// alone: the batch failed, and the caller runs fn again in a
	// transaction of its own (in its goroutine: a panic of fn is its).
	alone bool
	// panicked: fn, run by the worker, panicked with panicValue, which
	// the caller panics with.
	panicked   bool
	panicValue any
}

// BatchRead implements txn.BatchRead: the reads of a transaction's calls
// go together (queueRows.AttemptLater answers when write asks), then
// their writes. Alone, read and then write: write's first answer sends
// what read left waiting.
func (l locking) BatchRead(ctx context.Context, group, key string, read, write func(backend.Tx) error) error {
	c := &batchCall{key: key, read: read, write: write, fn: func(tx backend.Tx) error {
		if err := read(tx); err != nil {
			return err
		}
		return write(tx)
	}}
	return l.b.batch(ctx, group, c)
}

func (l locking) Batch(ctx context.Context, group, key string, fn func(backend.Tx) error) error {
	return l.b.batch(ctx, group, &batchCall{key: key, fn: fn})
}

func (b *Backend) batch(ctx context.Context, group string, c *batchCall) error {
	fn := c.fn
	if txn.InJoin(ctx) {
		// The caller's change is one transaction with others: its own.
		return b.update(ctx, lockingWrite, fn)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.ctx, c.done = ctx, make(chan batchResult, 1)
	bt := b.batches.of(group)
	if bt.add(c, batchTxs) {
		go b.batchWorker(bt)
	}
	var res batchResult
	select {
	case res = <-c.done:
	case <-ctx.Done():
		// Still queued, the function has not run and never will; once
		// a transaction has taken it, the caller must wait for its
		// outcome to know it.
		if bt.remove(c) {
			return fmt.Errorf("postgres: %w", ctx.Err())
		}
		res = <-c.done
	}
	switch {
	case res.panicked:
		panic(res.panicValue)
	case res.alone:
		return b.update(ctx, lockingWrite, fn)
	}
	return res.err
}

// batchWorker runs batched transactions while functions are waiting.
func (b *Backend) batchWorker(bt *batcher) { bt.work(batchMax, b.runCalls) }

// runCalls gives every call its result. A function that panics does not
// end the worker (nor the process): its caller panics.
func (b *Backend) runCalls(calls []*batchCall) {
	if len(calls) == 1 {
		c := calls[0]
		c.done <- b.runAlone(c)
		return
	}
	ctxs := make([]context.Context, len(calls))
	for i, c := range calls {
		ctxs[i] = c.ctx
	}
	ctx, cancel := latestContext(ctxs)
	panicked, err := b.runBatchSafely(ctx, calls)
	cancel()
	if !panicked && (err == nil || errors.Is(err, ErrUnavailable)) {
		for _, c := range calls {
			c.done <- batchResult{err: err}
		}
		return
	}
	b.db.log.Debug("postgres: a batched transaction failed; its functions run one by one", "functions", len(calls), "error", err)
	for _, c := range calls {
		c.done <- batchResult{alone: true}
	}
}

// runAlone runs one call in a transaction of its own.
func (b *Backend) runAlone(c *batchCall) (res batchResult) {
	defer func() {
		if p := recover(); p != nil {
			res = batchResult{panicked: true, panicValue: p}
		}
	}()
	return batchResult{err: b.update(c.ctx, lockingWrite, c.fn)}
}

// runBatchSafely is runBatch, reporting a panic of a function instead
// of passing it on (the transaction's connection, mid-transaction, is
// then closed by the pool).
func (b *Backend) runBatchSafely(ctx context.Context, calls []*batchCall) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			b.db.log.Error("postgres: a batched function panicked; its caller runs it again alone", "panic", p, "stack", string(debug.Stack()))
			panicked, err = true, fmt.Errorf("postgres: a batched function panicked: %v", p)
		}
	}()
	return false, b.runBatch(ctx, calls)
}

// batchFailed is a batched function's own error.
type batchFailed struct {
	key string
	err error
}

func (e batchFailed) Error() string {
	return fmt.Sprintf("the function of key %q in the batch: %v", e.key, e.err)
}

func (e batchFailed) Unwrap() error { return e.err }

// rounds splits calls (in key order) into rounds of distinct keys, in
// order: the n-th call of a key is in round n, so that it reads after the
// one before it wrote (two records of one message's recipients).
func rounds(calls []*batchCall) [][]*batchCall {
	var out [][]*batchCall
	n := 0
	for i, c := range calls {
		if i > 0 && c.key == calls[i-1].key {
			n++
		} else {
			n = 0
		}
		if n == len(out) {
			out = append(out, nil)
		}
		out[n] = append(out[n], c)
	}
	return out
}

// runBatch runs the functions in one transaction of the locking runner's,
// on a pipe that merges their rows.
func (b *Backend) runBatch(ctx context.Context, calls []*batchCall) error {
	// In key order: two batches lock their messages' rows in one order.
	calls = slices.Clone(calls)
	slices.SortStableFunc(calls, func(x, y *batchCall) int { return strings.Compare(x.key, y.key) })
	var tx *Tx
	err := b.db.runPipe(ctx, lockingWrite, func(p *pipe) error {
		p.merge = true
		tx = &Tx{ctx: ctx, tx: p, iso: lockingWrite.IsoLevel, write: true}
		for _, round := range rounds(calls) {
			// The reads of the round, sent together with the first answer
			// a write asks for; then the writes.
			for _, c := range round {
				if c.read != nil {
					if err := c.read(tx); err != nil {
						return batchFailed{c.key, err}
					}
				}
			}
			for _, c := range round {
				run := c.fn
				if c.read != nil {
					run = c.write
				}
				if err := run(tx); err != nil {
					return batchFailed{c.key, err}
				}
			}
		}
		return nil
	})
	if err == nil {
		for _, n := range tx.notices {
			b.hear(n)
		}
	}
	return err
}

// Merging rows (pipe.merge): a deferred write of one row that names a
// multi statement may be sent with the other rows of that statement in
// the same batch, as one statement whose parameters are one array per
// column ($1 the first column's values, and so on).

// mergeQueue returns q with the writes of each multi statement that
// occurs more than once in a run of such writes replaced by one
// statement, where the first of them was. A write of no multi statement
// (a DELETE, an UPDATE) ends a run: no row moves past it, since it may
// touch the row (a function that deletes an entry and writes it again).
// Within a run, rows move only past rows of other multi statements,
// which are other tables' inserts; the rows of one statement keep their
// order.
func mergeQueue(q []deferred) []deferred {
	var out []deferred
	for start := 0; start < len(q); {
		end := start
		for end < len(q) && q[end].multi != "" {
			end++
		}
		if end == start {
			end++ // a write of its own
		}
		run := q[start:end]
		if m := mergeRun(run); out != nil || len(m) != len(run) {
			if out == nil {
				out = append(make([]deferred, 0, len(q)), q[:start]...)
			}
			out = append(out, m...)
		}
		start = end
	}
	if out == nil {
		return q
	}
	return out
}

// mergeRun is mergeQueue for writes of multi statements only.
func mergeRun(q []deferred) []deferred {
	if len(q) < 2 {
		return q
	}
	groups := map[string][]int{}
	for i, d := range q {
		groups[d.multi] = append(groups[d.multi], i)
	}
	merged := map[string][]deferred{}
	for multi, idx := range groups {
		if len(idx) < 2 {
			continue
		}
		var ms []deferred
		for _, chunk := range chunks(q, idx) {
			m := q[chunk[0]]
			if len(chunk) > 1 {
				var ok bool
				if m, ok = mergeRows(q, chunk); !ok {
					ms = nil
					break
				}
			}
			ms = append(ms, m)
		}
		if ms != nil {
			merged[multi] = ms
		}
	}
	if len(merged) == 0 {
		return q
	}
	out := make([]deferred, 0, len(q))
	for i, d := range q {
		m, ok := merged[d.multi]
		switch {
		case !ok:
			// alone, or of a kind that does not merge: where it was
			out = append(out, d)
		case groups[d.multi][0] == i:
			out = append(out, m...)
		}
	}
	return out
}

// chunks splits idx, in order, into runs of rows whose values add up to
// at most mergeBytes (a row larger than that alone).
func chunks(q []deferred, idx []int) [][]int {
	var out [][]int
	start, size := 0, 0
	for k, i := range idx {
		n := 0
		for _, a := range q[i].args {
			switch v := a.(type) {
			case string:
				n += len(v)
			case []byte:
				n += len(v)
			}
			n += 8
		}
		if k > start && size+n > mergeBytes {
			out = append(out, idx[start:k])
			start, size = k, 0
		}
		size += n
	}
	return append(out, idx[start:])
}

// mergeRows is one statement for the rows q[idx...]: their multi with
// one array per column. A column whose values differ in type (or are of
// a type without an array here) is not merged (ok false).
func mergeRows(q []deferred, idx []int) (deferred, bool) {
	first := q[idx[0]]
	for _, i := range idx {
		if len(q[i].args) != len(first.args) || (q[i].scan == nil) != (first.scan == nil) {
			return deferred{}, false
		}
	}
	cols := make([]any, len(first.args))
	for c := range first.args {
		var ok bool
		if cols[c], ok = column(q, idx, c); !ok {
			return deferred{}, false
		}
	}
	m := deferred{sql: first.multi, args: cols}
	if first.scan != nil {
		m.scanRows = func(rows pgx.Rows) error {
			// One number per row, increasing with the rows' order (a
			// sequence's, taken row by row): each row's scan gets its own.
			nums, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return err
			}
			if len(nums) != len(idx) {
				return fmt.Errorf("postgres: %d rows returned for %d written", len(nums), len(idx))
			}
			slices.Sort(nums)
			for k, i := range idx {
				if err := q[i].scan(numberRow(nums[k])); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return m, true
}

// column is the values of column c of the rows as one array.
func column(q []deferred, idx []int, c int) (any, bool) {
	switch q[idx[0]].args[c].(type) {
	case string:
		return gather[string](q, idx, c)
	case int:
		return gather[int](q, idx, c)
	case time.Time:
		return gather[time.Time](q, idx, c)
	case []byte:
		return gather[[]byte](q, idx, c)
	}
	return nil, false
}

func gather[T any](q []deferred, idx []int, c int) ([]T, bool) {
	out := make([]T, len(idx))
	for k, i := range idx {
		v, ok := q[i].args[c].(T)
		if !ok {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

// numberRow is a row of one bigint.
type numberRow int64

func (n numberRow) Scan(dest ...any) error {
	if len(dest) != 1 {
		return fmt.Errorf("postgres: scanning one number into %d destinations", len(dest))
	}
	p, ok := dest[0].(*int64)
	if !ok {
		return fmt.Errorf("postgres: scanning a number into %T", dest[0])
	}
	*p = int64(n)
	return nil
}
