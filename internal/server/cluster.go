package server

import (
	"context"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres"
)

// Several Heed nodes on one PostgreSQL (issue 17, docs/postgresql.md,
// "Several nodes"): each node hears the others' changes of the registry
// and of paused tenants, and of their new events (postgres.Cluster), and
// the work one node does for all runs under a lease (postgres.Leases):
// the retention job, the guard's look at paused tenants, the dispatch to
// each webhook endpoint. On bbolt one process has the file open: none of
// this is wired, and every job runs here.

// Names of the jobs' leases.
const (
	leaseRetention  = "job retention"
	leaseAutoResume = "job reputation auto-resume"
)

// clusterTimeout bounds what a node does on another node's notice.
const clusterTimeout = 30 * time.Second

// once reports whether this node runs the job whose lease is name: on
// PostgreSQL the node that took the lease keeps it, and runs the job each
// period, until it stops or loses its connection; then another node's
// next try takes it. Holding it across periods, not only through a run,
// is what makes a job run once per period: a node whose clock is a
// little behind would otherwise run it again right after.
func (r *Relay) once(ctx context.Context, name string) bool {
	if r.st.leases == nil {
		return true
	}
	ok, err := r.st.leases.Take(ctx, name)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("heed: taking a job's cluster lease; not run here this time", "job", name, "err", err)
	}
	return ok
}

// startCluster starts hearing the other nodes, on PostgreSQL.
func (r *Relay) startCluster() {
	if r.st.cluster == nil {
		return
	}
	r.st.cluster(postgres.ClusterOptions{Changed: r.changedElsewhere, Missed: r.missedChanges, Logger: r.log})
}

// changedElsewhere is a notice of a change committed by any node (this
// one too), after the tenant cache was dropped: a pause or resume reaches
// the guard's set of paused tenants.
func (r *Relay) changedElsewhere(kind, subject string) {
	if kind != "paused" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	resumed, err := r.rep.guard.Refresh(ctx, subject)
	if err != nil {
		r.log.Error("heed: reading a tenant's pause another node changed", "tenant", subject, "err", err)
		return
	}
	if resumed && r.queue != nil {
		r.queue.Kick() // its held mail was made due by the node that resumed it
	}
}

// missedChanges reloads what this node keeps in memory when notices may
// have been lost (the listening connection was made again).
func (r *Relay) missedChanges() {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := r.rep.guard.Load(ctx); err != nil {
		r.log.Error("heed: reading the paused tenants again", "err", err)
	}
	if r.webhooks != nil {
		r.webhooks.Changed()
	}
}
