package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// terminate ends the server session pid from db, as a node's death or a
// lost network would.
func terminate(t *testing.T, db *DB, pid uint32) {
	t.Helper()
	var ok bool
	if err := db.pool.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, ok, err)
	}
}

// TestJobRunsOncePerPeriod: two nodes on one database run the same
// periodic job; in each period both try it at once, and exactly one runs
// it, the same one each time. When the holder's connection is gone (its
// server session ended, as when its node dies), it learns that it holds
// nothing, and the other node takes the job over at its next try.
func TestJobRunsOncePerPeriod(t *testing.T) {
	db1, dsn := migrated(t)
	db2 := openTest(t, dsn, nil)
	l1, l2 := db1.Leases(), db2.Leases()
	t.Cleanup(l1.Close)
	t.Cleanup(l2.Close)
	var lost1, lost2 atomic.Int32
	l1.OnLost(func() { lost1.Add(1) })
	l2.OnLost(func() { lost2.Add(1) })
	ctx := context.Background()
	const job = "job retention"

	// period runs one period on both nodes at once, and returns which
	// ran the job.
	period := func() (ran []*Leases) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, l := range []*Leases{l1, l2} {
			wg.Go(func() {
				ok, err := l.Take(ctx, job)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					ran = append(ran, l)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return ran
	}
	ran := period()
	if len(ran) != 1 {
		t.Fatalf("%d nodes ran the job in the first period, want 1", len(ran))
	}
	holder, other := ran[0], l1
	if holder == l1 {
		other = l2
	}
	for i := range 10 {
		if got := period(); len(got) != 1 || got[0] != holder {
			t.Fatalf("period %d: ran on %d nodes, or moved without cause", i+2, len(got))
		}
	}

	// The holder's session ends.
	terminate(t, db1, holder.backendPID())
	eventually(t, 10*time.Second, "the holder never noticed it lost its lease", func() bool { return !holder.Holds(job) })
	if lost1.Load()+lost2.Load() != 1 {
		t.Errorf("OnLost ran %d and %d times, want once on the holder", lost1.Load(), lost2.Load())
	}
	// A dead node tries nothing: the other's next try takes the job
	// (were the first to come back at once, it could win the race, which
	// is as good: one node runs the job).
	if ok, err := other.Take(ctx, job); !ok || err != nil {
		t.Fatalf("after the holder's loss the other node could not take the job: %v %v", ok, err)
	}
	for i := range 5 {
		if got := period(); len(got) != 1 || got[0] != other {
			t.Fatalf("period %d after the takeover: ran on %d nodes", i+1, len(got))
		}
	}

	// Close releases at once: the first node takes it back.
	other.Close()
	if ok, err := holder.Take(ctx, job); !ok || err != nil {
		t.Fatalf("after the new holder stopped, the first could not take the job: %v %v", ok, err)
	}
}
