package store

import (
	"errors"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("store: database closed")

type request struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// maxBatch bounds one transaction, so one commit never holds a writer for
// long.
const maxBatch = 512

// Update runs fn in a read-write transaction and returns once the
// transaction is on disk. Concurrent calls share one transaction and one
// fsync (natural batching: whatever queued while the previous commit was
// syncing goes into the next one, so there is no added delay when the load
// is low and one fsync per batch when it is high).
//
// fn may run more than once (when another function in the same batch
// fails, the rest are retried without it) and must have no effect outside
// the transaction.
func (db *DB) Update(fn func(*bolt.Tx) error) error {
	r := &request{fn: fn, err: make(chan error, 1)}
	db.mu.RLock()
	if db.isClosed {
		db.mu.RUnlock()
		return ErrClosed
	}
	// Sent under the read lock: Close takes the write lock before it stops
	// the committer, so every request queued is one it will answer.
	db.reqs <- r
	db.mu.RUnlock()
	return <-r.err
}

func (db *DB) commitLoop() {
	defer close(db.done)
	for {
		var first *request
		select {
		case first = <-db.reqs:
		case <-db.closed:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-db.reqs:
					db.run([]*request{r})
				default:
					return
				}
			}
		}
		batch := []*request{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-db.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.run(batch)
	}
}

// run commits batch in one transaction. A function that fails is answered
// with its error and the others are retried without it.
func (db *DB) run(batch []*request) {
	for len(batch) > 0 {
		failed := -1
		var ferr error
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			for i, r := range batch {
				if err := call(r.fn, tx); err != nil {
					failed, ferr = i, err
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			batch[failed].err <- ferr
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		for _, r := range batch {
			r.err <- err
		}
		return
	}
}

// call runs fn, turning a panic into its error: the committer serves
// every writer, and one faulty function must fail its own request, not
// the process.
func call(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: a transaction function panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(tx)
}
