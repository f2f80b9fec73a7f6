package queue

import (
	"context"
	"time"
)

// LeaseRows is the schedule's leases, kept by a backend that several
// nodes share (internal/backend/postgres): a node claims the due entries
// it will attempt, so that no other node attempts them meanwhile. A
// single-node backend (bbolt) has none, and its queue reads the schedule
// as it always did (Rows.Due).
//
// A lease names its node and ends at a time of the database's clock, not
// the node's: nodes whose clocks disagree still agree on which lease is
// live. The entry's Due stays the queue's clock (Options.Now).
//
// Lifecycle, in one claim transaction: Leased, then Claimable, then
// Lease on what was taken. Renew and Unlease are transactions of their
// own. Record's Unschedule deletes the entry and its lease with it.
type LeaseRows interface {
	// Leased starts a claim: it makes concurrent claims (on any node) take
	// turns until this transaction ends, so that a per-domain cap counts
	// every lease, and returns how many live leases each domain has.
	Leased() (map[string]int, error)
	// Claimable calls fn with the entries due at or before now and under
	// no live lease, in the schedule's order, locked for this transaction
	// (entries another transaction holds, such as one recording an
	// attempt, are passed over), until fn returns false or max entries
	// were passed. next is the earliest Due after now (zero: none).
	Claimable(now time.Time, max int, fn func(Job) bool) (next time.Time, err error)
	// Lease leases jobs to node for d from the database's now.
	Lease(node string, d time.Duration, jobs []Job) error
	// Renew extends node's leases on jobs to d from the database's now;
	// an entry whose lease ran out and another node took is left alone.
	Renew(node string, d time.Duration, jobs []Job) error
	// Unlease ends node's leases on jobs, for attempts it gave up before
	// recording them: another node may take them at once.
	Unlease(node string, jobs []Job) error
	// UnleaseAll ends every lease of node and returns how many there
	// were: at its start, for those of its previous life.
	UnleaseAll(node string) (int, error)
}

// leases is how Records claims on a shared schedule (Records.Leases).
type leases struct {
	node      string
	d         time.Duration
	domainCap int
}

// ClusterPoll bounds how long a node that claims with leases waits
// before it looks at the schedule again: mail another node accepted (and
// whose node is busy), or whose node died and whose leases ran out, is
// taken by this node within it. Kicks come sooner for its own work.
const ClusterPoll = time.Second

// Leases makes Due claim the entries it returns: each is leased to node
// for d, renewed while its attempt runs (Queue renews every d/3) and
// ended by Record. domainCap is delivery.domain_concurrency, held across
// every node that shares the schedule: a claim counts the live leases of
// a domain, its own node's included. The backend's rows must implement
// LeaseRows. Set it before the queue starts.
func (s *Records) Leases(node string, d time.Duration, domainCap int) *Records {
	s.lease = &leases{node: node, d: d, domainCap: domainCap}
	return s
}

// LeaseTime is the lease length Leases set (zero: no leases).
func (s *Records) LeaseTime() time.Duration {
	if s.lease == nil {
		return 0
	}
	return s.lease.d
}

// claim is Due with leases: it runs in an Update (on PostgreSQL READ
// COMMITTED, the rows of the entries locked SKIP LOCKED), and leases
// what it returns.
func (s *Records) claim(ctx context.Context, now time.Time, limit int, skip func(Job) bool) (jobs []Job, next time.Time, err error) {
	l := s.lease
	maxScan := 4*limit + 1024
	err = s.tx.Update(ctx, func(tx Tx) error {
		jobs, next = nil, time.Time{} // the function may run more than once
		rows := tx.Queue().(LeaseRows)
		active, err := rows.Leased()
		if err != nil {
			return err
		}
		taken := map[string]int{}
		next, err = rows.Claimable(now, maxScan, func(j Job) bool {
			if skip != nil && skip(j) {
				return true
			}
			if active[j.Domain]+taken[j.Domain] >= l.domainCap {
				return true
			}
			jobs = append(jobs, j)
			taken[j.Domain]++
			return len(jobs) < limit
		})
		if err != nil || len(jobs) == 0 {
			return err
		}
		return rows.Lease(l.node, l.d, jobs)
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	if poll := now.Add(ClusterPoll); next.IsZero() || next.After(poll) {
		next = poll
	}
	return jobs, next, nil
}

// Renew extends this node's leases on jobs, attempts still running.
func (s *Records) Renew(ctx context.Context, jobs []Job) error {
	if s.lease == nil || len(jobs) == 0 {
		return nil
	}
	return s.tx.Update(ctx, func(tx Tx) error {
		return tx.Queue().(LeaseRows).Renew(s.lease.node, s.lease.d, jobs)
	})
}

// Unlease ends this node's leases on jobs it will not record (an attempt
// cut short by Stop), so that another node need not wait for them to
// run out.
func (s *Records) Unlease(ctx context.Context, jobs []Job) error {
	if s.lease == nil || len(jobs) == 0 {
		return nil
	}
	return s.tx.Update(ctx, func(tx Tx) error {
		return tx.Queue().(LeaseRows).Unlease(s.lease.node, jobs)
	})
}

// EndOwnLeases ends every lease held under this node's name, and says
// how many: a node calls it at start, before its queue runs, for the
// attempts its previous life (a crash) left leased, so that they are
// made again at once rather than when their leases run out. The name
// must be this process's alone (internal/server keeps it in data_dir
// under a lock).
func (s *Records) EndOwnLeases(ctx context.Context) (int, error) {
	if s.lease == nil {
		return 0, nil
	}
	n := 0
	err := s.tx.Update(ctx, func(tx Tx) error {
		var err error
		n, err = tx.Queue().(LeaseRows).UnleaseAll(s.lease.node)
		return err
	})
	return n, err
}

// leaser is the part of a Store that keeps leases (Records after
// Leases): the queue renews the leases of its attempts while they run
// and ends those of attempts it abandons.
type leaser interface {
	LeaseTime() time.Duration
	Renew(ctx context.Context, jobs []Job) error
	Unlease(ctx context.Context, jobs []Job) error
}
