package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
)

// purgedEvents is the log line of a retention run that deleted events
// (internal/server, Relay.purge).
const purgedEvents = `msg="heed: retention deleted old records" what=events`

// TestPeriodicJobOncePerPeriod: the retention job, which every node
// tries at its start and every hour after (not configurable: the test
// cannot wait for an hour), runs once however many nodes try it, on the
// node that holds its lease; when that node dies, the next node to try
// takes it and runs it, and the others' tries still do nothing.
//
// A run shows by what it deletes: events made older than
// retention.events (its default, 30 days) by moving their time back in
// the database, since no node's clock can be moved. Each batch of
// such events must be deleted by one run, of one node, logged once.
func TestPeriodicJobOncePerPeriod(t *testing.T) {
	c := startCluster(t, options{nodes: 3, later: 2, logLevel: "info"})
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	// The first node ran the job at its start, with nothing old yet, and
	// holds its lease from then on.
	waitFor(t, n1.name+" to try the job", time.Minute, func() bool { return c.triedLeases() == 1 })

	batch1 := c.ageEvents(t, 0, "p1")
	for _, n := range []*node{n2, n3} {
		n.start()
		n.waitReady()
	}
	waitFor(t, "the three nodes to try the job", time.Minute, func() bool { return c.triedLeases() == 3 })
	if left := c.agedEvents(); left != batch1 {
		t.Fatalf("%d of %d old events left after the second and third nodes started: they ran the job their first node holds", left, batch1)
	}

	// The holder dies; the next try (a restart stands in for a node's
	// hourly one) takes the job and runs it, once.
	n1.kill()
	n2.kill()
	waitFor(t, "the killed nodes' sessions to end", time.Minute, func() bool { return c.triedLeases() == 1 })
	n2.start()
	n2.waitReady()
	waitFor(t, n2.name+" to run the job the dead node held", time.Minute, func() bool {
		return strings.Contains(n2.output(), fmt.Sprintf("%s count=%d ", purgedEvents, batch1))
	})
	if left := c.agedEvents(); left != 0 {
		t.Fatalf("%d old events left after %s's run", left, n2.name)
	}

	batch2 := c.ageEvents(t, 1, "p2")
	n3.kill()
	waitFor(t, n3.name+"'s session to end", time.Minute, func() bool { return c.triedLeases() == 1 })
	for _, n := range []*node{n3, n1} {
		n.start()
		n.waitReady()
	}
	waitFor(t, "the three nodes to try the job again", time.Minute, func() bool { return c.triedLeases() == 3 })
	if left := c.agedEvents(); left != batch2 {
		t.Errorf("%d of %d old events left after the first and third nodes restarted: they ran the job the second node holds", left, batch2)
	}
	runs := 0
	for _, n := range c.nodes {
		runs += strings.Count(n.allOutput(), purgedEvents)
	}
	if runs != 1 {
		t.Errorf("the retention job deleted events in %d runs, want 1", runs)
	}
	t.Logf("batches of %d and %d old events; one run deleted the first, on %s after the holder's death; six tries in all", batch1, batch2, n2.name)
}

// ageEvents submits a message through c.nodes[via], waits for its
// delivery, and moves every event of the log older than
// retention.events; it returns how many it moved.
func (c *cluster) ageEvents(t *testing.T, via int, id string) int {
	t.Helper()
	s := &submitter{c: c, next: via}
	defer s.close()
	if err := s.send(id, ""); err != nil {
		t.Fatal(err)
	}
	var acked ackLog
	acked.add(id)
	c.waitDelivered(&acked, time.Minute)
	var k int
	fmt.Sscan(pgtest.Strings(t, c.dsn, `WITH u AS (UPDATE events SET happened_at = happened_at - interval '40 days'
		WHERE happened_at > now() - interval '1 day' RETURNING 1) SELECT count(*) FROM u`)[0], &k)
	if k == 0 {
		t.Fatal("no event to age")
	}
	return k
}

// agedEvents counts the events older than retention.events.
func (c *cluster) agedEvents() int {
	var k int
	fmt.Sscan(pgtest.Strings(c.t, c.dsn, `SELECT count(*) FROM events WHERE happened_at < now() - interval '31 days'`)[0], &k)
	return k
}

// triedLeases counts the nodes that have tried a lease (a job's, with no
// webhook endpoint): the sessions the nodes keep for their leases
// (application_name "heed leases") that have run a statement and are
// idle, so that a run that follows a successful try has started.
func (c *cluster) triedLeases() int {
	var k int
	fmt.Sscan(pgtest.Strings(c.t, c.dsn, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'heed leases'
		AND state = 'idle' AND query <> ''`)[0], &k)
	return k
}
