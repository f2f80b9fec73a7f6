package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
)

// TestQueueWritesTakeTurns: the queue's transactions run at READ
// COMMITTED, so one that reads a message's recipients to write them back
// (a release, an erasure) must lock them: an attempt's record of one of
// those recipients waits for it, and then writes over what it wrote,
// instead of being overwritten by what it had read before the record
// (a delivered recipient made pending again).
func TestQueueWritesTakeTurns(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	q := Queue(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	m := &queue.Message{ID: ids.New(at), Tenant: "acme", List: "transactional", From: "a@acme.test", ReceivedAt: at,
		Body:       []byte("Subject: hi\r\n\r\nhello\r\n"),
		Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}, {Index: 1, Address: "sam@example.net"}}}
	if err := q.Add(ctx, m); err != nil {
		t.Fatal(err)
	}

	read, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	letGo := func() { once.Do(func() { close(proceed) }) }
	t.Cleanup(letGo)
	rewrote := make(chan error, 1)
	go func() {
		var first sync.Once
		rewrote <- locking{b}.Update(ctx, func(tx backend.Tx) error {
			rows := tx.Queue()
			rs, err := rows.Recipients(m.ID)
			if err != nil {
				return err
			}
			first.Do(func() { close(read) })
			<-proceed
			rs[0].LastReply = "rewritten"
			return rows.PutRecipient(m.ID, &rs[0])
		})
	}()
	<-read
	recorded := make(chan error, 1)
	go func() {
		_, err := q.Record(ctx, queue.Job{MessageID: m.ID, Index: 0, Domain: "example.net", Due: at},
			queue.Outcome{State: queue.Delivered, Reply: "250 2.0.0 ok", At: at.Add(time.Second)})
		recorded <- err
	}()
	eventually(t, 20*time.Second, "the record to wait for the rewrite's locks", func() bool {
		var n int
		if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE NOT granted").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	letGo()
	if err := <-rewrote; err != nil {
		t.Fatal(err)
	}
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	got, err := q.Message(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r := got.Recipients[0]; r.State != queue.Delivered || r.LastReply != "250 2.0.0 ok" {
		t.Errorf("recipient 0 after both: %+v; want the record's delivery", r)
	}
	if got.Pending != 1 {
		t.Errorf("pending = %d, want 1", got.Pending)
	}
}

// TestAttemptUnreadableRecipient: a recipient whose row cannot be decoded
// is an error of a record that is there (rec true), as Attempt always
// answered, with or without the body and in either runner.
func TestAttemptUnreadableRecipient(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	q := Queue(b)
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	m := &queue.Message{ID: ids.New(at), Tenant: "acme", ReceivedAt: at,
		Body: []byte("Subject: hi\r\n\r\nhello\r\n"), Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}}}
	must(t, q.Add(ctx, m))
	if _, err := db.pool.Exec(ctx, `UPDATE deliveries SET record = '{"attempts":"x"}' WHERE message_id = $1`, m.ID); err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct {
		name string
		r    func(context.Context, func(backend.Tx) error) error
	}{{"serializable", b.Update}, {"locking", locking{b}.Update}} {
		for _, withBody := range []bool{false, true} {
			err := run.r(ctx, func(tx backend.Tx) error {
				_, _, _, rec, ok, err := tx.Queue().Attempt(m.ID, 0, withBody)
				if err == nil || !rec || ok {
					t.Errorf("%s, body %v: rec %v, ok %v, err %v; want the record there, no recipient and an error", run.name, withBody, rec, ok, err)
				}
				return nil
			})
			must(t, err)
		}
	}
}

// TestClaimPlansWithIndexes: a claim's transaction plans without
// sequential or bitmap scans (plans made while the schedule was empty
// read the whole schedule, or every entry deleted within a lease, on
// each claim), and only that transaction: the next one on the pool plans
// as the server is configured.
func TestClaimPlansWithIndexes(t *testing.T) {
	db, _ := migrated(t)
	b := db.Backend()
	ctx := context.Background()
	settings := func(tx backend.Tx) (string, error) {
		var seq, bitmap string
		err := tx.(*Tx).tx.QueryRow(ctx, "SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan')").Scan(&seq, &bitmap)
		return seq + " " + bitmap, err
	}
	err := locking{b}.Update(ctx, func(tx backend.Tx) error {
		if _, err := tx.Queue().(queue.LeaseRows).Leased(); err != nil {
			return err
		}
		got, err := settings(tx)
		if err == nil && got != "off off" {
			t.Errorf("in a claim: enable_seqscan, enable_bitmapscan = %s, want off off", got)
		}
		return err
	})
	must(t, err)
	for range 3 { // the pool's connections, the claim's among them
		must(t, locking{b}.Update(ctx, func(tx backend.Tx) error {
			got, err := settings(tx)
			if err == nil && got != "on on" {
				t.Errorf("after a claim: %s, want on on", got)
			}
			return err
		}))
	}
}

// TestClaimLeasesByTupleID: a claim writes its leases by the tuple ids
// its SELECT … FOR UPDATE locked (a TID scan), not by matching the keys
// against unnest(), which kept a plan made on an empty schedule: a scan
// of the whole schedule on each claim. The recipients are leased all the
// same, once.
func TestClaimLeasesByTupleID(t *testing.T) {
	_, dsn := migrated(t)
	st := &statements{}
	db := openTest(t, dsn, func(c *pgxpool.Config) { c.ConnConfig.Tracer = st })
	q := Queue(db.Backend()).Leases("node1", time.Minute, 10)
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond).Add(-time.Minute)
	for i := range 3 {
		must(t, q.Add(ctx, &queue.Message{ID: ids.New(at.Add(time.Duration(i) * time.Millisecond)), Tenant: "acme", ReceivedAt: at,
			Body: []byte("Subject: hi\r\n\r\nhello\r\n"), Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}}}))
	}
	jobs, _, err := q.Due(ctx, time.Now(), 10, nil)
	must(t, err)
	if len(jobs) != 3 {
		t.Fatalf("claimed %d jobs, want 3", len(jobs))
	}
	if again, _, err := q.Due(ctx, time.Now(), 10, nil); err != nil || len(again) != 0 {
		t.Fatalf("a second claim took %d jobs (%v), want none: the leases hold", len(again), err)
	}
	byTID, byKeys := 0, 0
	for _, s := range st.list() {
		if strings.HasPrefix(s.sql, "UPDATE schedule SET lease_node") {
			if strings.Contains(s.sql, "ctid = ANY") {
				byTID++
			} else {
				byKeys++
			}
		}
	}
	if byTID != 1 || byKeys != 0 {
		t.Errorf("leases written %d time(s) by tuple id, %d by keys; want once by tuple id", byTID, byKeys)
	}
}
