package txn

import (
	"context"
	"errors"
)

// A change made through several stores, and what must commit with it (an
// admin change and its audit record), is one transaction even though each
// store opens its own through its Runner: the caller puts a Join in the
// context (WithJoin) and opens the transaction, and every Update or View
// of the same database made with that context while it is open runs in
// it instead of a transaction of its own. The backends honour it through
// Enter and EnterView; domain packages only pass their context on, and
// call AfterCommit for what must wait for the commit (a cache
// invalidation, a dispatcher's wake-up). docs/storage.md has why.
//
// A Join belongs to one request and is used by one goroutine at a time.
//
// A joined Update whose function fails has no rollback of its own (bbolt
// has no savepoints): its error must fail the whole change, as every
// domain store's does by returning it. A store may fail a joined Update
// on a rule before it writes (ErrNotFound, ErrExists) and go on, as
// webhooks.Manager.Put does; one that wrote must not be swallowed.
type Join struct {
	owner any // the database whose transaction is open; nil when none is
	tx    any
	after []func()
}

type joinKey struct{}

// WithJoin returns ctx carrying a new Join: the first Update made with it
// opens the transaction that the calls under it then join.
func WithJoin(ctx context.Context) context.Context {
	return context.WithValue(ctx, joinKey{}, &Join{})
}

func joinOf(ctx context.Context) *Join {
	j, _ := ctx.Value(joinKey{}).(*Join)
	return j
}

// Joining reports whether calls made with ctx run in a transaction that
// is still open (a read cache must then neither serve them, since they
// may see the transaction's own writes, nor keep what they read, which
// may never commit).
func Joining(ctx context.Context) bool {
	j := joinOf(ctx)
	return j != nil && j.owner != nil
}

// InJoin reports whether ctx carries a Join, open or not: an Update made
// with it opens or joins the change's transaction.
func InJoin(ctx context.Context) bool { return joinOf(ctx) != nil }

// AfterCommit runs fn once the joined transaction open under ctx has
// ended, committed or not (a commit that failed may still be visible);
// at once when ctx has none open.
func AfterCommit(ctx context.Context, fn func()) {
	if j := joinOf(ctx); j != nil && j.owner != nil {
		j.after = append(j.after, fn)
		return
	}
	fn()
}

// ErrOtherDatabase is the error of an Update joined to a transaction of
// another database: the change could not be atomic, so it is not made.
var ErrOtherDatabase = errors.New("txn: the change's transaction is of another database")

// Enter is a backend's Update under a Join: owner names the backend's
// database (any value equal for every backend over it), open runs a
// function in a new read-write transaction of it. With no Join in ctx,
// Enter is open(fn). The first Update under a Join opens the transaction
// and holds it there while fn runs (again, on a retry); the Updates under
// the Join while it is open run fn in it. The functions given to AfterCommit run after open
// returned.
func Enter[T any](ctx context.Context, owner any, open func(func(T) error) error, fn func(T) error) error {
	j := joinOf(ctx)
	if j == nil {
		return open(fn)
	}
	if j.owner != nil {
		if j.owner != owner {
			return ErrOtherDatabase
		}
		return fn(j.tx.(T))
	}
	err := open(func(tx T) error {
		j.owner, j.tx, j.after = owner, tx, j.after[:0]
		defer func() { j.owner, j.tx = nil, nil }()
		return fn(tx)
	})
	after := j.after
	j.after = nil
	for _, f := range after {
		f()
	}
	return err
}

// EnterView is a backend's View under a Join: in the joined transaction
// of owner when one is open (it sees the change's own writes), else
// view(fn).
func EnterView[T any](ctx context.Context, owner any, view func(func(T) error) error, fn func(T) error) error {
	if j := joinOf(ctx); j != nil && j.owner != nil {
		if j.owner != owner {
			return ErrOtherDatabase
		}
		return fn(j.tx.(T))
	}
	return view(fn)
}
