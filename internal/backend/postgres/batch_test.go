package postgres

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
)

// hold makes bt's transactions all look busy, so that the calls made
// meanwhile wait in its queue; the function returned waits until n are
// queued and lets one transaction take them all.
func hold(t *testing.T, b *Backend, bt *batcher) (release func(n int)) {
	t.Helper()
	bt.mu.Lock()
	bt.running = batchTxs
	bt.mu.Unlock()
	return func(n int) {
		t.Helper()
		eventually(t, 20*time.Second, fmt.Sprintf("%d calls queued", n), func() bool {
			bt.mu.Lock()
			defer bt.mu.Unlock()
			return len(bt.queue) == n
		})
		bt.mu.Lock()
		bt.running = 1
		bt.mu.Unlock()
		go b.batchWorker(bt)
	}
}

// acceptTogether accepts the messages msg(0) … msg(n-1) at once, in one
// batched transaction, on a fresh database whose statements it traces.
func acceptTogether(t *testing.T, n int, msg func(i int) *queue.Message) (*statements, *Backend, *queue.Records, []*queue.Message) {
	t.Helper()
	_, dsn := migrated(t)
	st := &statements{}
	db := openTest(t, dsn, func(c *pgxpool.Config) { c.ConnConfig.Tracer = st })
	b := db.Backend()
	q := Queue(b)
	release := hold(t, b, b.batches.of("accept"))
	msgs := make([]*queue.Message, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		msgs[i] = msg(i)
		wg.Go(func() { errs[i] = q.Add(context.Background(), msgs[i]) })
	}
	release(n)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("accept %d: %v", i, err)
		}
	}
	return st, b, q, msgs
}

// TestBatchedAcceptsCommitTogether: twelve messages accepted at once,
// two recipients each, commit in one transaction whose rows of each kind
// go as one statement; every message, recipient, body, schedule entry
// and event is there afterwards, and each event's number is its row's.
func TestBatchedAcceptsCommitTogether(t *testing.T) {
	const n = 12
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	st, b, q, msgs := acceptTogether(t, n, func(i int) *queue.Message {
		return &queue.Message{ID: ids.New(at.Add(time.Duration(i) * time.Millisecond)), Tenant: "acme", List: "transactional",
			From: "a@acme.test", ReceivedAt: at, Body: fmt.Appendf(nil, "Subject: %d\r\n\r\nhello %d\r\n", i, i),
			Recipients: []queue.Recipient{{Index: 0, Address: fmt.Sprintf("pat%d@example.net", i)}, {Index: 1, Address: fmt.Sprintf("sam%d@example.org", i)}}}
	})
	ctx := context.Background()

	for i, m := range msgs {
		rec, err := q.Message(ctx, m.ID)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(rec.Recipients) != 2 || rec.Pending != 2 || rec.Recipients[1].Address != m.Recipients[1].Address {
			t.Errorf("message %d read back as %+v", i, rec)
		}
		job := queue.Job{MessageID: m.ID, Index: 1, Domain: "example.org", Due: at}
		loaded, _, err := q.Load(ctx, job)
		if err != nil || string(loaded.Body) != string(m.Body) {
			t.Errorf("message %d's body: %q, %v", i, loaded.Body, err)
		}
	}
	if depth, err := q.Depth(); err != nil || depth != 2*n {
		t.Errorf("schedule holds %d entries (%v), want %d", depth, err, 2*n)
	}
	got, err := Events(b).Events(ctx, "acme", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*n {
		t.Fatalf("%d events, want %d", len(got), 2*n)
	}
	seen := map[uint64]bool{}
	for _, ev := range got {
		if ev.Type != events.MessageAccepted || seen[ev.Seq] {
			t.Errorf("event %+v", ev)
		}
		seen[ev.Seq] = true
	}

	var inserts, merged int
	for _, s := range st.list() {
		if strings.HasPrefix(s.sql, "INSERT INTO messages") {
			inserts++
			if strings.Contains(s.sql, "unnest") {
				merged++
			}
		}
	}
	if inserts != 1 || merged != 1 {
		t.Errorf("the twelve messages took %d inserts of messages (%d of many rows), want one of many rows", inserts, merged)
	}
}

// TestBatchedEventNumbers: the events of a batch's functions get the
// numbers of their own rows, in each function's order.
func TestBatchedEventNumbers(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	release := hold(t, b, b.batches.of("events"))
	ctx := context.Background()
	const n = 5
	evs := make([][]*events.Event, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		evs[i] = []*events.Event{
			{Type: events.MessageAccepted, Time: time.Now().UTC(), Data: events.Data{Tenant: "acme", MessageID: fmt.Sprintf("m%d", i), Recipient: "first@example.net"}},
			{Type: events.MessageAccepted, Time: time.Now().UTC(), Data: events.Data{Tenant: "acme", MessageID: fmt.Sprintf("m%d", i), Recipient: "second@example.net"}},
		}
		wg.Go(func() {
			errs[i] = locking{b}.Batch(ctx, "events", "", func(tx backend.Tx) error {
				for _, ev := range evs[i] {
					if err := tx.Events().Insert(ev); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	release(n)
	wg.Wait()
	stored, err := Events(b).Events(ctx, "acme", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[uint64]events.Event{}
	for _, ev := range stored {
		bySeq[ev.Seq] = ev
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("function %d: %v", i, errs[i])
		}
		if evs[i][0].Seq >= evs[i][1].Seq {
			t.Errorf("function %d's events numbered %d, %d: out of its order", i, evs[i][0].Seq, evs[i][1].Seq)
		}
		for _, ev := range evs[i] {
			row, ok := bySeq[ev.Seq]
			if !ok || row.Data.MessageID != ev.Data.MessageID || row.Data.Recipient != ev.Data.Recipient {
				t.Errorf("event %s/%s was told number %d, whose row is %+v", ev.Data.MessageID, ev.Data.Recipient, ev.Seq, row)
			}
		}
	}
}

// TestBatchFailureIsOwnFunctions: a function of a batch that fails gets
// its error and leaves nothing; the others of its batch commit.
func TestBatchFailureIsOwnFunctions(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	release := hold(t, b, b.batches.of("accept"))
	ctx := context.Background()
	boom := errors.New("boom")
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	keys := []string{"0001-a", "0002-b", "0003-c"}
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, id := range keys {
		wg.Go(func() {
			errs[i] = locking{b}.Batch(ctx, "accept", "", func(tx backend.Tx) error {
				m := queue.Message{ID: id, Tenant: "acme", ReceivedAt: at}
				if err := tx.Queue().PutMessage(&m); err != nil {
					return err
				}
				if i == 1 {
					return boom
				}
				return nil
			})
		})
	}
	release(len(keys))
	wg.Wait()
	if errs[0] != nil || !errors.Is(errs[1], boom) || errs[2] != nil {
		t.Fatalf("outcomes %v; want nil, boom, nil", errs)
	}
	q := Queue(b)
	for i, id := range keys {
		_, err := q.Message(ctx, id)
		if kept := err == nil; kept != (i != 1) {
			t.Errorf("message %s kept: %v (%v)", id, kept, err)
		}
	}
}

// gatheredReads queues one read of SELECT $1::text || '!' per argument,
// in their order, while the reads' senders look busy, then lets one
// round trip carry them all, and returns what each read, its error and
// what its caller recovered from a panic.
func gatheredReads(t *testing.T, db *DB, args ...any) (got []string, errs []error, recovered []any) {
	t.Helper()
	b, r, ctx := db.Backend(), &db.reads, context.Background()
	r.mu.Lock()
	r.running = readSenders
	r.mu.Unlock()
	got, errs, recovered = make([]string, len(args)), make([]error, len(args)), make([]any, len(args))
	var wg sync.WaitGroup
	for i, a := range args {
		wg.Go(func() {
			defer func() { recovered[i] = recover() }()
			errs[i] = b.ViewOne(ctx, func(tx backend.Tx) error {
				return tx.(*Tx).tx.QueryRow(ctx, "SELECT $1::text || '!'", a).Scan(&got[i])
			})
		})
		eventually(t, 20*time.Second, fmt.Sprintf("%d reads queued", i+1), func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.queue) == i+1
		})
	}
	r.mu.Lock()
	r.running = 1
	r.mu.Unlock()
	go r.send()
	wg.Wait()
	return got, errs, recovered
}

// TestGatheredReadsFailAlone: reads gathered into one round trip each
// have a transaction of their own, so one the server refuses (a string
// that is not UTF-8, as a client could send in AUTH) fails alone.
func TestGatheredReadsFailAlone(t *testing.T) {
	db, _ := migrated(t)
	// In this order: the bad one between the others.
	got, errs, _ := gatheredReads(t, db, "one", "t\xffo", "three")
	if errs[0] != nil || got[0] != "one!" || errs[2] != nil || got[2] != "three!" {
		t.Errorf("the good reads: %q %v, %q %v", got[0], errs[0], got[2], errs[2])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "22021") {
		t.Errorf("the bad read: %q, %v; want the server's refusal (22021)", got[1], errs[1])
	}
}

// TestBatchKeepsWriteOrder: a function's rows are written in the order
// it wrote them, though the batch sends the rows of each kind together.
// Here one function schedules a new entry and another deletes an entry
// and writes it again (its own row, no read needed): the entry is there
// afterwards, as after two Updates. Merging the second insert into the
// first, ahead of the DELETE, lost it.
func TestBatchKeepsWriteOrder(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	ctx := context.Background()
	due := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	j := queue.Job{MessageID: "0001-j", Index: 0, Domain: "example.net", Due: due}
	k := queue.Job{MessageID: "0002-k", Index: 0, Domain: "example.org", Due: due}
	l := locking{b}
	if err := l.Update(ctx, func(tx backend.Tx) error { return tx.Queue().Schedule(j) }); err != nil {
		t.Fatal(err)
	}
	release := hold(t, b, b.batches.of("order"))
	fns := []func(backend.Tx) error{
		func(tx backend.Tx) error { return tx.Queue().Schedule(k) },
		func(tx backend.Tx) error {
			if err := tx.Queue().Unschedule(j); err != nil {
				return err
			}
			return tx.Queue().Schedule(j)
		},
	}
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() { errs[i] = l.Batch(ctx, "order", "", fn) })
		eventually(t, 20*time.Second, fmt.Sprintf("%d calls queued", i+1), func() bool {
			bt := b.batches.of("order")
			bt.mu.Lock()
			defer bt.mu.Unlock()
			return len(bt.queue) == i+1
		})
	}
	release(len(fns))
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("function %d: %v", i, err)
		}
	}
	for _, job := range []queue.Job{j, k} {
		var n int
		if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM schedule WHERE message_id = $1", job.MessageID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: %d schedule entries, want 1", job.MessageID, n)
		}
	}
}

// TestBatchPanicIsCallers: a batched function that panics panics in its
// caller's goroutine (where the SMTP session's or HTTP handler's recover
// is), not in the batch's, which would end the process; the others of
// its batch commit, and the group goes on taking calls.
func TestBatchPanicIsCallers(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	release := hold(t, b, b.batches.of("accept"))
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	keys := []string{"0001-a", "0002-b", "0003-c"}
	errs := make([]error, len(keys))
	recovered := make([]any, len(keys))
	var wg sync.WaitGroup
	for i, id := range keys {
		wg.Go(func() {
			defer func() { recovered[i] = recover() }()
			errs[i] = locking{b}.Batch(ctx, "accept", "", func(tx backend.Tx) error {
				m := queue.Message{ID: id, Tenant: "acme", ReceivedAt: at}
				if err := tx.Queue().PutMessage(&m); err != nil {
					return err
				}
				if i == 1 {
					panic("boom")
				}
				return nil
			})
		})
	}
	release(len(keys))
	wg.Wait()
	if errs[0] != nil || errs[2] != nil || recovered[0] != nil || recovered[2] != nil {
		t.Fatalf("the others: %v %v, panics %v %v", errs[0], errs[2], recovered[0], recovered[2])
	}
	if recovered[1] != "boom" {
		t.Fatalf("the panicking call recovered %v, want boom", recovered[1])
	}
	q := Queue(b)
	for i, id := range keys {
		_, err := q.Message(ctx, id)
		if kept := err == nil; kept != (i != 1) {
			t.Errorf("message %s kept: %v (%v)", id, kept, err)
		}
	}
	// One call alone, too.
	func() {
		defer func() {
			if p := recover(); p != "alone" {
				t.Errorf("a call alone recovered %v, want alone", p)
			}
		}()
		_ = locking{b}.Batch(ctx, "accept", "", func(backend.Tx) error { panic("alone") })
	}()
	l := locking{b}
	if err := l.Batch(ctx, "accept", "", func(backend.Tx) error { return nil }); err != nil {
		t.Errorf("a call after the panics: %v", err)
	}
}

// TestBatchCallerDeadline: a call still waiting for a transaction when
// its context ends returns the context's error and is never run; one a
// transaction has taken waits for its outcome.
func TestBatchCallerDeadline(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	bt := b.batches.of("accept")
	release := hold(t, b, bt) // every transaction busy
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ran := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- locking{b}.Batch(ctx, "accept", "", func(backend.Tx) error {
			ran <- struct{}{}
			return nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a call past its deadline: %v, want the deadline", err)
		}
	case <-time.After(20 * time.Second):
		release(1)
		t.Fatal("a call waiting for a busy group outlived its deadline")
	}
	bt.mu.Lock()
	queued := len(bt.queue)
	bt.running = 0
	bt.mu.Unlock()
	if queued != 0 {
		t.Errorf("%d calls left in the queue", queued)
	}
	select {
	case <-ran:
		t.Error("the abandoned function ran")
	default:
	}
}

// panicky is an argument whose encoding panics.
type panicky struct{}

func (panicky) Value() (driver.Value, error) { panic("encoding") }

// TestGatheredReadCallerOwnsItsEnd: a gathered read whose argument
// panics as it is encoded panics in its caller's goroutine, not in the
// sender's, and the reads sent with it are answered; a read still
// waiting for a sender when its context ends returns its error.
func TestGatheredReadCallerOwnsItsEnd(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	r := &db.reads
	r.mu.Lock()
	r.running = readSenders
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- b.ViewOne(ctx, func(tx backend.Tx) error {
			var s string
			return tx.(*Tx).tx.QueryRow(ctx, "SELECT 'late'").Scan(&s)
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a read past its deadline: %v, want the deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a read waiting for a sender outlived its deadline")
	}
	r.mu.Lock()
	r.queue = nil
	r.mu.Unlock()

	got, errs, recovered := gatheredReads(t, db, "one", panicky{}, "three")
	if errs[0] != nil || got[0] != "one!" || errs[2] != nil || got[2] != "three!" || recovered[0] != nil || recovered[2] != nil {
		t.Errorf("the good reads: %q %v %v, %q %v %v", got[0], errs[0], recovered[0], got[2], errs[2], recovered[2])
	}
	if recovered[1] != "encoding" {
		t.Errorf("the panicking read: recovered %v (%v), want encoding", recovered[1], errs[1])
	}
}

// TestBatchedBodiesBounded: the bodies of a batch's messages go in
// statements of at most mergeBytes of values (a few rows each), not in
// one: the server drops a connection whose message passes 1 GiB, and a
// batch of 64 accepts of 25 MB would then fail every accept of it as
// unavailable, whoever sent the large ones.
func TestBatchedBodiesBounded(t *testing.T) {
	const n = 3
	size := mergeBytes * 3 / 4
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	st, _, q, msgs := acceptTogether(t, n, func(i int) *queue.Message {
		body := append(fmt.Appendf(nil, "Subject: %d\r\n\r\n", i), strings.Repeat("x", size)...)
		return &queue.Message{ID: ids.New(at.Add(time.Duration(i) * time.Millisecond)), Tenant: "acme", List: "transactional",
			From: "a@acme.test", ReceivedAt: at, Body: body,
			Recipients: []queue.Recipient{{Index: 0, Address: fmt.Sprintf("pat%d@example.net", i)}}}
	})
	ctx := context.Background()
	inserts := 0
	for _, s := range st.list() {
		if strings.HasPrefix(s.sql, "INSERT INTO bodies") {
			inserts++
		}
	}
	if inserts < 2 {
		t.Errorf("%d bodies of %d bytes went in %d statement(s), want no more than %d bytes a statement", n, size, inserts, mergeBytes)
	}
	for i, m := range msgs {
		loaded, _, err := q.Load(ctx, queue.Job{MessageID: m.ID, Index: 0, Domain: "example.net", Due: at})
		if err != nil || !bytes.Equal(loaded.Body, m.Body) {
			t.Errorf("message %d's body: %d bytes, %v", i, len(loaded.Body), err)
		}
	}
}

// TestRecordBatchesTakeLocksInOneOrder: two batches of records, each
// locking a recipient of two messages, given their calls in opposite
// orders. Each runs its functions in key order (the message id), so the
// second waits for the first instead of locking the other message first:
// unordered, each would hold one message and wait for the other's, a
// deadlock PostgreSQL breaks after a second by failing one batch, which
// then runs again.
func TestRecordBatchesTakeLocksInOneOrder(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	q := Queue(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var msgs []string
	for i := range 2 {
		m := &queue.Message{ID: ids.New(at.Add(time.Duration(i) * time.Second)), Tenant: "acme", ReceivedAt: at,
			Body:       []byte("Subject: hi\r\n\r\nhello\r\n"),
			Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}, {Index: 1, Address: "sam@example.net"}}}
		must(t, q.Add(ctx, m))
		msgs = append(msgs, m.ID)
	}
	var runs, arrived atomic.Int32
	waiting := func() bool {
		var n int
		err := db.pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&n)
		return err == nil && n > 0
	}
	// batch is the calls locking recipient idx of the messages in order;
	// the first of them, having locked, waits until the other batch has
	// locked too or waits for a lock.
	batch := func(idx int, order ...string) []*batchCall {
		first := true
		var calls []*batchCall
		for _, id := range order {
			calls = append(calls, &batchCall{ctx: ctx, key: id, fn: func(tx backend.Tx) error {
				runs.Add(1)
				if _, _, _, _, _, err := tx.Queue().Attempt(id, idx, false); err != nil {
					return err
				}
				if first {
					first = false
					arrived.Add(1)
					deadline := time.Now().Add(20 * time.Second)
					for arrived.Load() < 2 && !waiting() && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond) // polling a condition, with a deadline
					}
				}
				return nil
			}})
		}
		return calls
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = b.runBatch(ctx, batch(0, msgs[1], msgs[0])) })
	wg.Go(func() { errs[1] = b.runBatch(ctx, batch(1, msgs[0], msgs[1])) })
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("batches: %v, %v", errs[0], errs[1])
	}
	if n := runs.Load(); n != 4 {
		t.Errorf("the four records ran %d times: a batch ran again (a deadlock between the two)", n)
	}
}

// TestRecordsBatchedReadTogether: the records of five attempts, two of
// them of one message's two recipients, commit in one transaction whose
// reads go together (txn.BatchRead): the second record of the message
// reads after the first wrote, so its pending count ends at 0, exactly
// one record says the message is finished and its body is gone, and every
// recipient is delivered with its event. The first round's reads go in
// one round trip.
func TestRecordsBatchedReadTogether(t *testing.T) {
	_, dsn := migrated(t)
	st := &statements{}
	db := openTest(t, dsn, func(c *pgxpool.Config) { c.ConnConfig.Tracer = st })
	b := db.Backend()
	q := Queue(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var jobs []queue.Job
	var ids4 []string
	for i := range 4 {
		m := &queue.Message{ID: ids.New(at.Add(time.Duration(i) * time.Second)), Tenant: "acme", ReceivedAt: at,
			Body: []byte("Subject: hi\r\n\r\nhello\r\n"), Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}}}
		if i == 0 {
			m.Recipients = append(m.Recipients, queue.Recipient{Index: 1, Address: "sam@example.net"})
		}
		must(t, q.Add(ctx, m))
		ids4 = append(ids4, m.ID)
		for _, r := range m.Recipients {
			jobs = append(jobs, queue.Job{MessageID: m.ID, Index: r.Index, Domain: "example.net", Due: at})
		}
	}
	st.mu.Lock()
	st.all = nil
	st.mu.Unlock()
	release := hold(t, b, b.batches.of("record"))
	finished := make([]bool, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			finished[i], errs[i] = q.Record(ctx, j, queue.Outcome{State: queue.Delivered, Reply: "250 2.0.0 ok", At: at.Add(time.Minute)})
		})
	}
	release(len(jobs))
	wg.Wait()
	done := 0
	for i, j := range jobs {
		if errs[i] != nil {
			t.Fatalf("record %d: %v", i, errs[i])
		}
		if j.MessageID == ids4[0] && finished[i] {
			done++
		}
	}
	if done != 1 {
		t.Errorf("%d records of the two-recipient message said it finished, want 1", done)
	}
	for _, id := range ids4 {
		m, err := q.Message(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Pending != 0 {
			t.Errorf("message %s: pending %d after its recipients were delivered, want 0", id, m.Pending)
		}
		for _, r := range m.Recipients {
			if r.State != queue.Delivered {
				t.Errorf("message %s recipient %d: %s", id, r.Index, r.State)
			}
		}
		if _, _, err := q.Load(ctx, queue.Job{MessageID: id, Index: 0, Domain: "example.net", Due: at}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := Events(b).Events(ctx, "acme", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, ev := range evs {
		if ev.Type == events.MessageDelivered {
			delivered++
		}
	}
	if delivered != len(jobs) {
		t.Errorf("%d message.delivered events, want %d", delivered, len(jobs))
	}
	reads := 0
	for _, s := range st.list() {
		if strings.Contains(s.sql, "FOR UPDATE") && strings.Contains(s.sql, "JOIN deliveries") {
			reads++
		}
	}
	if reads != len(jobs) {
		t.Errorf("%d reads of records, want %d (each read once)", reads, len(jobs))
	}
}
