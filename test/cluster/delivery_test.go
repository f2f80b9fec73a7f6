package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// killMessages is how many messages TestNodeKilledMidRun submits, as the
// issue asks: about 26 s on the 2-core machine make test runs on, with
// three nodes and PostgreSQL sharing it (the pipelined transactions made
// it affordable; it was 2,000 before them).
const killMessages = 10000

// TestNodeKilledMidRun: messages submitted across three nodes while the
// second is killed with SIGKILL and later restarted. Every message that
// got a 250 reaches a sink; a message with two copies is one the killed
// process was attempting (it held a lease on it at the kill), and never
// one two live nodes both delivered.
func TestNodeKilledMidRun(t *testing.T) {
	c := startCluster(t, options{nodes: 3})
	victim := c.nodes[1]
	var acked ackLog
	var next atomic.Int64
	var refused sync.Map // SMTP code → true, for the log
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &submitter{c: c, next: g}
			defer s.close()
			for {
				i := next.Add(1)
				if i > killMessages {
					return
				}
				id := fmt.Sprintf("k-%d", i)
				// An application retries what was not acknowledged; each
				// try is a new message, as a client's resend would be.
				for try := 0; ; try++ {
					err := s.send(fmt.Sprintf("%s-%d", id, try), "")
					if err == nil {
						acked.add(fmt.Sprintf("%s-%d", id, try))
						break
					}
					if code := smtpCode(err); code != 0 {
						refused.Store(code, true)
					}
					if try > 100 {
						t.Errorf("message %s refused 100 times, last: %v", id, err)
						return
					}
				}
			}
		}()
	}
	waitFor(t, "a third of the messages acknowledged", 2*time.Minute, func() bool { return acked.count() >= killMessages/3 })
	victim.kill()
	// What the killed process had delivered before it died is at its
	// sink now: positions below this are its first life's copies.
	firstLife := len(victim.sink.Messages())
	inFlight := c.leasesOf(victim)
	ackedAtKill := acked.count()

	waitFor(t, "two thirds of the messages acknowledged", 2*time.Minute, func() bool { return acked.count() >= 2*killMessages/3 })
	victim.start()
	victim.waitReady()
	wg.Wait()

	got := c.waitDelivered(&acked, 2*time.Minute)
	dups, byVictim := 0, 0
	for id, cs := range got {
		dups += len(cs) - 1
		live := 0
		for _, cp := range cs {
			if cp.node == 1 && cp.pos < firstLife {
				byVictim++
				continue
			}
			live++
		}
		if live > 1 {
			t.Errorf("message %s delivered %d times by live nodes: %v", id, live, cs)
		}
	}
	if dups > inFlight {
		t.Errorf("%d duplicates, more than the %d attempts the killed node held leases on", dups, inFlight)
	}
	var codes []any
	refused.Range(func(k, _ any) bool { codes = append(codes, k); return true })
	t.Logf("acknowledged %d (%d before the kill), delivered %d, duplicates %d (leases held by the killed node: %d), lost 0; refusals seen: %v",
		acked.count(), ackedAtKill, len(got), dups, inFlight, codes)
	if victim.ready() != http.StatusOK {
		t.Errorf("the restarted node is not ready")
	}
}

// TestDatabaseStoppedMidRun: PostgreSQL stopped (pg_ctl stop -m fast)
// and started again while two nodes take mail. Meanwhile the nodes
// answer SMTP with a temporary refusal and /readyz with 503; afterwards
// they take mail again without a restart, and every message that got a
// 250 before, during or after reaches a sink.
func TestDatabaseStoppedMidRun(t *testing.T) {
	c := startCluster(t, options{nodes: 2, ownDatabaseServer: true})
	var acked ackLog
	var next atomic.Int64
	var mu sync.Mutex
	refusals := map[int]int{} // SMTP code → count, while the database was away
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &submitter{c: c, next: g}
			defer s.close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("o-%d", next.Add(1))
				err := s.send(id, "")
				if err == nil {
					acked.add(id)
					continue
				}
				code := smtpCode(err)
				mu.Lock()
				refusals[code]++
				mu.Unlock()
				if code >= 500 {
					t.Errorf("message %s refused permanently while the database was away: %v", id, err)
				}
				// A client waits a little before its next try.
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	waitFor(t, "messages acknowledged before the outage", time.Minute, func() bool { return acked.count() >= 150 })
	c.pg.StopFast()
	for _, n := range c.nodes {
		waitFor(t, n.name+"'s /readyz to answer 503", 30*time.Second, func() bool { return n.ready() == http.StatusServiceUnavailable })
	}
	during := acked.count()
	waitFor(t, "submissions refused with a 4xx during the outage", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for code, k := range refusals {
			if code >= 400 && code < 500 {
				n += k
			}
		}
		return n >= 4
	})
	if err := c.pg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mail acknowledged again after the database came back", time.Minute, func() bool { return acked.count() >= during+150 })
	for _, n := range c.nodes {
		waitFor(t, n.name+"'s /readyz to answer 200 again", 30*time.Second, func() bool { return n.ready() == http.StatusOK })
	}
	close(stop)
	wg.Wait()
	got := c.waitDelivered(&acked, 2*time.Minute)
	dups := 0
	for _, cs := range got {
		dups += len(cs) - 1
	}
	// A copy is sent twice only when its outcome could not be recorded
	// (the database went away between the next hop's 250 and the
	// commit): each such attempt is logged, and bounds the duplicates.
	unrecorded := 0
	for _, n := range c.nodes {
		unrecorded += strings.Count(n.output(), "queue: recording an attempt")
	}
	if dups > unrecorded {
		t.Errorf("%d duplicates, more than the %d attempts whose outcome the nodes could not record", dups, unrecorded)
	}
	mu.Lock()
	t.Logf("acknowledged %d (%d by the outage), delivered %d, duplicates %d (outcomes not recorded: %d), lost 0; refusals by code (0: connection): %v",
		acked.count(), during, len(got), dups, unrecorded, refusals)
	mu.Unlock()
}
