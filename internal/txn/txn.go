// Package txn is the one shape of a storage transaction that Heed's domain
// packages see, whatever the backend (bbolt or PostgreSQL) under it.
//
// A domain package declares what it needs inside a transaction as an
// interface of its own (events.TxLog, suppression.Tx) and takes a
// Runner of it. The backends have one transaction type with every face
// (internal/backend.Tx); the wiring code narrows a backend to the face a
// package asks for with Narrow, and Go's structural interfaces do the
// rest. So a domain package never imports a backend, and a backend keeps
// rows while the domain package keeps its rules. docs/storage.md has the
// whole design.
package txn

import (
	"context"
	"errors"
)

// Runner opens transactions whose face is T.
//
// Update runs fn in a read-write transaction and returns nil only once it
// is committed durably. fn may run more than once (bbolt's group commit
// retries a batch without a function that failed; PostgreSQL retries a
// serialization failure), so it must work only through its transaction:
// no reply to a client, no webhook, no append to a slice it does not
// reset, from inside fn. When fn returns an error, nothing it wrote is
// kept and Update returns that error.
//
// View runs fn in a read-only transaction that sees one consistent
// snapshot. It too may run fn more than once.
type Runner[T any] interface {
	Update(ctx context.Context, fn func(T) error) error
	View(ctx context.Context, fn func(T) error) error
}

// ViewOne is View for a function that makes one read (one query of the
// rows): a backend may run it without a transaction around it, since one
// statement sees one snapshot of its own anyway (PostgreSQL: no BEGIN and
// COMMIT, two round trips fewer). Runners without it run View.
func ViewOne[T any](ctx context.Context, r Runner[T], fn func(T) error) error {
	if o, ok := r.(oneReader[T]); ok {
		return o.ViewOne(ctx, fn)
	}
	return r.View(ctx, fn)
}

// oneReader is a Runner with a ViewOne of its own.
type oneReader[T any] interface {
	ViewOne(ctx context.Context, fn func(T) error) error
}

// Batch is Update for a function that a backend may run in one
// transaction with the functions of concurrent Batch calls, committed
// once for all of them (a group commit of the backend's own, where its
// Update commits each function alone: PostgreSQL's queue). Its promises
// are Update's: nil only once fn's writes are committed durably; when fn
// fails, nothing it wrote is kept and Batch returns its error (the
// backend runs the others again without it).
//
// The functions of a batch run one after another, each seeing what the
// ones before it wrote. A backend may send the writes made since the
// transaction's last read together, the rows of one kind as one
// statement, in an order other than the calls': a function must not
// write a row that another function of the batch may write too, unless
// it read the row first (a new message's rows are its own; an attempt's
// record reads its message before writing it). Only functions of one
// group (a name: "accept", "record") share a transaction, so that the
// quick ones do not wait behind the reads of others. The functions of a
// transaction run in the order of their keys (the rows they lock: a
// message id), so that two transactions that lock rows of the same
// messages take them in one order and never wait for each other in a
// circle (a deadlock, which PostgreSQL breaks only after a second).
// Runners without Batch run Update.
func Batch[T any](ctx context.Context, r Runner[T], group, key string, fn func(T) error) error {
	if b, ok := r.(batcher[T]); ok {
		return b.Batch(ctx, group, key, fn)
	}
	return r.Update(ctx, fn)
}

// BatchRead is Batch for a function in two parts: read makes its reads,
// whose answers a backend may give only when write runs (queue.Records'
// record asks for an Attempt in read and takes the answer in write), and
// write the rest. A backend may then run the reads of a transaction's
// functions first, together (one round trip for all), and their writes
// after: functions with equal keys do not read together, the later one
// reads after the earlier one wrote. Runners without it run read and then
// write in Batch.
func BatchRead[T any](ctx context.Context, r Runner[T], group, key string, read, write func(T) error) error {
	if b, ok := r.(readBatcher[T]); ok {
		return b.BatchRead(ctx, group, key, read, write)
	}
	return Batch(ctx, r, group, key, func(tx T) error {
		if err := read(tx); err != nil {
			return err
		}
		return write(tx)
	})
}

// readBatcher is a Runner with a BatchRead of its own.
type readBatcher[T any] interface {
	BatchRead(ctx context.Context, group, key string, read, write func(T) error) error
}

// batcher is a Runner with a Batch of its own.
type batcher[T any] interface {
	Batch(ctx context.Context, group, key string, fn func(T) error) error
}

// Narrow returns a Runner of N over r, converting each transaction with
// conv (usually an identity function between interface types:
// func(t backend.Tx) suppression.Tx { return t }).
func Narrow[W, N any](r Runner[W], conv func(W) N) Runner[N] {
	return narrowed[W, N]{r: r, conv: conv}
}

type narrowed[W, N any] struct {
	r    Runner[W]
	conv func(W) N
}

func (n narrowed[W, N]) Update(ctx context.Context, fn func(N) error) error {
	return n.r.Update(ctx, func(w W) error { return fn(n.conv(w)) })
}

func (n narrowed[W, N]) View(ctx context.Context, fn func(N) error) error {
	return n.r.View(ctx, func(w W) error { return fn(n.conv(w)) })
}

func (n narrowed[W, N]) ViewOne(ctx context.Context, fn func(N) error) error {
	return ViewOne(ctx, n.r, func(w W) error { return fn(n.conv(w)) })
}

func (n narrowed[W, N]) BatchRead(ctx context.Context, group, key string, read, write func(N) error) error {
	return BatchRead(ctx, n.r, group, key, func(w W) error { return read(n.conv(w)) }, func(w W) error { return write(n.conv(w)) })
}

func (n narrowed[W, N]) Batch(ctx context.Context, group, key string, fn func(N) error) error {
	return Batch(ctx, n.r, group, key, func(w W) error { return fn(n.conv(w)) })
}

// ErrUnavailable is in the error of a transaction that could not reach
// its database (PostgreSQL stopped, restarting or out of reach): nothing
// was committed, or the outcome of a COMMIT is unknown. Listeners answer
// it with a temporary failure that names it (SMTP 451 4.3.0, HTTP 503),
// so that clients retry; the backend reconnects by itself.
var ErrUnavailable = errors.New("the database is unavailable")
