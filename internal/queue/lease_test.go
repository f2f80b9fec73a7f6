package queue_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/outbound"
	. "github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/testsink"
)

// The schedule's leases (issue 17: several nodes on one PostgreSQL).
// bbolt serves one node and has none; these tests run on PostgreSQL
// only, each "node" a Records of its own name over one database, as
// heed serve makes it (postgres.Queue, the locking runner).

// leaseDB is a fresh migrated database and its DSN.
func leaseDB(t *testing.T) (*postgres.Backend, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: 16, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db.Backend(), dsn
}

// node is the queue of one node named name over b, leasing for d with
// domainCap.
func node(b *postgres.Backend, name string, d time.Duration, domainCap int) *Records {
	return postgres.Queue(b).Leases(name, d, domainCap)
}

// claim is one node's claim of up to limit jobs due at now.
func claim(t *testing.T, n *Records, now time.Time, limit int) []Job {
	t.Helper()
	jobs, _, err := n.Due(context.Background(), now, limit, nil)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestLeasesClaimEachRecipientOnce: four nodes claim at once, over and
// over, until the schedule has nothing left to claim; every recipient is
// claimed by exactly one of them.
func TestLeasesClaimEachRecipientOnce(t *testing.T) {
	b, _ := leaseDB(t)
	ctx := context.Background()
	adder := postgres.Queue(b)
	want := 0
	for i := range 40 {
		var rcpts []string
		for j := range 8 {
			rcpts = append(rcpts, fmt.Sprintf("r%d@d%d.example", j, (i+j)%12))
		}
		if err := adder.Add(ctx, newMessage(t0.Add(time.Duration(i)*time.Millisecond), rcpts...)); err != nil {
			t.Fatal(err)
		}
		want += len(rcpts)
	}
	var mu sync.Mutex
	claimed := map[string][]string{} // recipient → the nodes that claimed it
	total := 0
	var wg sync.WaitGroup
	for n := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "node-" + strconv.Itoa(n)
			q := node(b, name, time.Minute, 1000)
			for {
				jobs, _, err := q.Due(ctx, t0.Add(time.Hour), 7, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if len(jobs) == 0 {
					return
				}
				mu.Lock()
				for _, j := range jobs {
					k := j.MessageID + "/" + strconv.Itoa(j.Index)
					claimed[k] = append(claimed[k], name)
				}
				total += len(jobs)
				over := total > want // some were claimed twice: enough seen
				mu.Unlock()
				if over {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(claimed) != want {
		t.Errorf("%d recipients claimed, want all %d", len(claimed), want)
	}
	for k, by := range claimed {
		if len(by) != 1 {
			t.Errorf("recipient %s claimed by %v, want one node", k, by)
		}
	}
}

// TestLeaseDomainCapAcrossNodes: delivery.domain_concurrency counts every
// node's attempts; a recorded outcome frees a place for any node.
func TestLeaseDomainCapAcrossNodes(t *testing.T) {
	b, _ := leaseDB(t)
	ctx := context.Background()
	var rcpts []string
	for i := range 10 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@busy.example", i))
	}
	rcpts = append(rcpts, "x@quiet.example")
	if err := postgres.Queue(b).Add(ctx, newMessage(t0, rcpts...)); err != nil {
		t.Fatal(err)
	}
	a, c := node(b, "a", time.Minute, 3), node(b, "c", time.Minute, 3)
	now := t0.Add(time.Second)
	ja := claim(t, a, now, 100)
	if n := countDomain(ja, "busy.example"); n != 3 {
		t.Fatalf("node a claimed %d recipients of busy.example, want the cap, 3 (%v)", n, ja)
	}
	jc := claim(t, c, now, 100)
	if n := countDomain(jc, "busy.example"); n != 0 {
		t.Fatalf("node c claimed %d recipients of busy.example while node a holds the cap", n)
	}
	if _, err := a.Record(ctx, ja[0], Outcome{State: Delivered, Reply: "250 ok", At: now}); err != nil {
		t.Fatal(err)
	}
	jc = claim(t, c, now, 100)
	if n := countDomain(jc, "busy.example"); n != 1 {
		t.Fatalf("after one outcome node c claimed %d recipients of busy.example, want 1", n)
	}
}

func countDomain(jobs []Job, domain string) int {
	n := 0
	for _, j := range jobs {
		if j.Domain == domain {
			n++
		}
	}
	return n
}

// TestLeaseOfADeadNodeRunsOut: a node that claimed a recipient and died
// (renews nothing, records nothing) holds it until its lease ends; then
// another node takes it, and the dead node's renewal, were it to come
// back, does not take it back. The lease's end is moved into the past
// in the database, as a minute passing would.
func TestLeaseOfADeadNodeRunsOut(t *testing.T) {
	b, dsn := leaseDB(t)
	ctx := context.Background()
	m := newMessage(t0, "x@example.net")
	if err := postgres.Queue(b).Add(ctx, m); err != nil {
		t.Fatal(err)
	}
	dead, live := node(b, "dead", time.Minute, 20), node(b, "live", time.Minute, 20)
	now := t0.Add(time.Second)
	jobs := claim(t, dead, now, 10)
	if len(jobs) != 1 {
		t.Fatalf("the first node claimed %v", jobs)
	}
	if got := claim(t, live, now, 10); len(got) != 0 {
		t.Fatalf("another node claimed %v while the first one's lease runs", got)
	}
	pgtest.Strings(t, dsn, "UPDATE schedule SET lease_until = now() - interval '1 second' RETURNING message_id")
	got := claim(t, live, now, 10)
	if len(got) != 1 || got[0].MessageID != m.ID {
		t.Fatalf("after the lease ran out another node claimed %v, want the recipient", got)
	}
	if err := dead.Renew(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if owner := pgtest.Strings(t, dsn, "SELECT lease_node FROM schedule"); len(owner) != 1 || owner[0] != "live" {
		t.Errorf("after the dead node's renewal the lease is %v's, want live's", owner)
	}
	if _, err := live.Record(ctx, got[0], Outcome{State: Delivered, Reply: "250 ok", At: now}); err != nil {
		t.Fatal(err)
	}
	if n := pgtest.Strings(t, dsn, "SELECT count(*) FROM schedule"); n[0] != "0" {
		t.Errorf("%s schedule entries after the outcome, want none (the lease ends with it)", n[0])
	}
}

// TestUnleaseFreesAtOnce: an attempt a node gives up (Stop) is taken by
// another node without waiting for the lease to end.
func TestUnleaseFreesAtOnce(t *testing.T) {
	b, _ := leaseDB(t)
	ctx := context.Background()
	if err := postgres.Queue(b).Add(ctx, newMessage(t0, "x@example.net")); err != nil {
		t.Fatal(err)
	}
	a, c := node(b, "a", time.Hour, 20), node(b, "c", time.Hour, 20)
	now := t0.Add(time.Second)
	jobs := claim(t, a, now, 10)
	if len(jobs) != 1 {
		t.Fatalf("claimed %v", jobs)
	}
	if err := a.Unlease(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, c, now, 10); len(got) != 1 {
		t.Fatalf("after the first node let go another node claimed %v", got)
	}
}

// TestLongAttemptKeepsItsLease: two nodes' queues on one database, a
// lease of 3 s and an attempt the next hop holds at RCPT for longer than
// that; the node making it renews its lease, so the other node never
// starts a second attempt, and the recipient gets one copy.
func TestLongAttemptKeepsItsLease(t *testing.T) {
	b, _ := leaseDB(t)
	const lease = 3 * time.Second
	release := make(chan struct{})
	var mu sync.Mutex
	rcpts := 0
	sink := testsink.Start(t, testsink.Options{Reply: func(stage, _, _ string, _ int) *smtp.SMTPError {
		if stage == "RCPT" {
			mu.Lock()
			rcpts++
			first := rcpts == 1
			mu.Unlock()
			if first {
				<-release
			}
		}
		return nil
	}})
	released := sync.OnceFunc(func() { close(release) })
	log := slog.New(slog.DiscardHandler)
	tr, err := outbound.New(outbound.Options{Mode: "mx", Hostname: "relay.test", Logger: log,
		Routes: map[string]string{"example.net": sink.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	var queues []*Queue
	for _, name := range []string{"a", "b"} {
		q := New(Options{Store: node(b, name, lease, 20), Spool: DatabaseSpool(), Transport: tr,
			Hostname: "relay.test", Logger: log, VERP: VERP{Domain: "bounces.relay.test", Key: []byte("k")}})
		q.Start()
		t.Cleanup(func() { q.Stop(context.Background()) })
		queues = append(queues, q)
	}
	// Clean-ups run last first: the held attempt is let go before Stop
	// waits for it.
	t.Cleanup(released)
	m := newMessage(time.Now(), "x@example.net")
	if err := queues[0].Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	attempts := func() int { mu.Lock(); defer mu.Unlock(); return rcpts }
	waitUntil(t, "the first attempt at the next hop", 30*time.Second, func() bool { return attempts() >= 1 })
	// The first lease would have run out by lease; the other node looks
	// at the schedule every ClusterPoll. Wait past both, or for the
	// second attempt that would show the lease was lost.
	first := time.Now()
	waitUntil(t, "the lease's time and a poll to pass", time.Minute, func() bool {
		return attempts() > 1 || time.Since(first) > lease+2*ClusterPoll
	})
	if n := attempts(); n != 1 {
		t.Fatalf("%d attempts started while the first one ran, want 1: its node did not keep its lease", n)
	}
	released()
	sink.Wait(t, 1, 30*time.Second)
	if n := attempts(); n != 1 || len(sink.Messages()) != 1 {
		t.Errorf("%d attempts, %d copies at the next hop; want 1 and 1", n, len(sink.Messages()))
	}
}

// waitUntil polls cond until it holds, failing t after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestRestartedNodeEndsItsLeases: a node that crashed and starts again
// under its name ends the leases of its previous life at once, so its
// recipients are attempted without waiting for the leases to run out.
func TestRestartedNodeEndsItsLeases(t *testing.T) {
	b, _ := leaseDB(t)
	ctx := context.Background()
	if err := postgres.Queue(b).Add(ctx, newMessage(t0, "x@example.net", "y@example.org")); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Second)
	if got := claim(t, node(b, "a", time.Hour, 20), now, 10); len(got) != 2 {
		t.Fatalf("claimed %v", got)
	}
	restarted := node(b, "a", time.Hour, 20)
	if n, err := restarted.EndOwnLeases(ctx); err != nil || n != 2 {
		t.Fatalf("EndOwnLeases = %d, %v; want the 2 leases of the previous run", n, err)
	}
	if got := claim(t, node(b, "c", time.Hour, 20), now, 10); len(got) != 2 {
		t.Fatalf("after the restart another node claimed %v, want both recipients", got)
	}
}
