package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// maxAttempts bounds how often Update and View run a transaction that
// lost to a concurrent one; past it the conflict is reported, as a
// temporary failure, rather than retried for ever.
const maxAttempts = 10

// Update runs fn in a read-write SERIALIZABLE transaction and commits it.
// SERIALIZABLE makes concurrent Updates behave as if they ran one after
// the other, which is what code written for bbolt's single writer
// assumes (read, decide, write); PostgreSQL answers a conflict with a
// serialization failure (SQLSTATE 40001) or a deadlock (40P01), and
// Update then runs fn again on a fresh transaction, up to maxAttempts
// times with a short random back-off.
//
// fn may therefore run more than once: it must work only through tx and
// keep no effect of a failed run (reply to no client, send no webhook,
// append to no slice it does not reset). If fn returns an error, the
// transaction is rolled back and Update returns that error.
//
// Update returns nil only after COMMIT returned, with synchronous_commit
// on (see Open). A connection lost before COMMIT was sent is retried once
// on a new connection, as nothing was committed; otherwise, and when
// the connection breaks during COMMIT, the error is ErrUnavailable.
func (db *DB) Update(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.run(ctx, serializable, fn)
}

// View runs fn in a read-only REPEATABLE READ transaction: one snapshot
// for all its queries, as a bbolt View sees. Its retries and errors are
// Update's.
func (db *DB) View(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.run(ctx, snapshot, fn)
}

// The isolation levels of the transactions (DB's and Backend's).
var (
	serializable  = pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadWrite}
	snapshot      = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	lockingWrite  = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}
	statementRead = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadOnly}
	// autocommit is ViewOne's: no transaction block at all.
	autocommit = pgx.TxOptions{}
)

func (db *DB) run(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return db.retry(ctx, func() (bool, error) { return db.attempt(ctx, opts, fn) })
}

// retry runs attempt until it succeeds, fails for good, or has lost to
// concurrent transactions maxAttempts times; committing is attempt's
// report that its error came from COMMIT, when the outcome is unknown.
func (db *DB) retry(ctx context.Context, attempt func() (committing bool, err error)) error {
	reconnected := false
	for n := 1; ; n++ {
		committing, err := attempt()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("postgres: %w (%v)", ctx.Err(), err)
		case isConflict(err):
			if n >= maxAttempts {
				return fmt.Errorf("postgres: transaction still conflicting with concurrent ones after %d attempts: %w", n, err)
			}
			if err := backoff(ctx, n); err != nil {
				return err
			}
		case isConnLoss(err):
			// The pool's other idle connections went with the server:
			// drop them all, so that the next attempt, and the next
			// call, dial afresh instead of finding them dead one by one.
			db.pool.Reset()
			if committing || reconnected {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			reconnected = true
		default:
			return err
		}
	}
}

// attempt runs fn once; committing reports that err came from COMMIT,
// when the transaction may or may not have been committed.
func (db *DB) attempt(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) (committing bool, err error) {
	tx, err := db.pool.BeginTx(ctx, opts)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil && !committing {
			// After a failed statement or a lost connection there is
			// nothing to keep; the error that matters is err.
			_ = tx.Rollback(ctx)
		}
	}()
	if err := fn(tx); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// backoff waits a random time that grows with attempt, so that two
// transactions that conflicted do not meet again in lockstep.
func backoff(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<attempt, 100*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("postgres: %w", ctx.Err())
	}
}

// isConflict reports a transaction that lost to a concurrent one and
// succeeds if run again (PostgreSQL docs, "Serialization Failure
// Handling").
func isConflict(err error) bool {
	var pe *pgconn.PgError
	var r raced
	return errors.As(err, &r) || errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// raced is the error of an insert, in a locking transaction, of a row the
// transaction had found missing and another one inserted since: the
// transaction runs again and finds the row (Tx.insertRace).
type raced struct{ err error }

func (r raced) Error() string { return "a concurrent transaction inserted the row: " + r.err.Error() }
func (r raced) Unwrap() error { return r.err }

// isConnLoss reports an error that says the server cannot be reached or
// went away, as opposed to one about the statement or the data.
func isConnLoss(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 is connection exception; 57P01-57P03 are the server
		// shutting down, crashing or still starting (Appendix A, "PostgreSQL
		// Error Codes").
		return strings.HasPrefix(pe.Code, "08") ||
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// classify wraps a lost connection in ErrUnavailable.
func classify(ctx context.Context, err error) error {
	if ctx.Err() == nil && isConnLoss(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
