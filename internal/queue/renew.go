package queue

import (
	"context"
	"time"
)

// renew keeps the leases of this node's attempts alive (Records.Leases)
// until Stop has seen the last attempt end: every third of the lease
// length, one transaction renews them all, so that an attempt as long as
// RFC 5321's timeouts allow (section 4.5.3.2: ten minutes for the end of
// DATA alone) is not taken over by another node while it runs. A renewal
// that fails is logged and tried at the next tick; the lease runs out only
// if the database stays unreachable for two thirds of it.
func (q *Queue) renew(l leaser) {
	every := l.LeaseTime() / 3
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-q.idle:
			return
		case <-tick.C:
		}
		q.mu.Lock()
		jobs := make([]Job, 0, len(q.inflight))
		for _, j := range q.inflight {
			jobs = append(jobs, j)
		}
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		if err := l.Renew(ctx, jobs); err != nil {
			q.log.Warn("queue: renewing the leases of running attempts", "jobs", len(jobs), "err", err)
		}
		cancel()
	}
}

// unlease ends the lease of an attempt given up before its outcome was
// recorded (Stop, a message that could not be loaded, a held tenant), so
// that another node may take it at once rather than when it runs out.
// Without leases it does nothing. A failure is only logged: the lease
// then runs out by itself.
func (q *Queue) unlease(j Job) {
	l, ok := q.o.Store.(leaser)
	if !ok || l.LeaseTime() <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Unlease(ctx, []Job{j}); err != nil {
		q.log.Warn("queue: ending the lease of an abandoned attempt", "msg", j.MessageID, "rcpt", j.Index, "err", err)
	}
}
