package server

import (
	"context"
	"time"

	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/tenant"
)

// reputationParts are the rates and the guard (issue 18).
type reputationParts struct {
	rates *reputation.Rates
	guard *reputation.Guard
}

// buildReputation makes the rates and the guard, loads the paused
// tenants and makes the queue count outcomes; after buildStores and
// buildLists, before the listeners and the queue that consult it.
func (r *Relay) buildReputation() error {
	cfg := r.cfg.Reputation
	tx := r.st.reputation
	r.rep.rates = reputation.NewRates(tx, time.Now)
	r.rep.guard = reputation.NewGuard(tx, reputation.GuardOptions{
		Levels: reputation.Levels{
			WarnBounce: cfg.WarnBounceRate, PauseBounce: cfg.PauseBounceRate,
			WarnComplaint: cfg.WarnComplaintRate, PauseComplaint: cfg.PauseComplaintRate,
			MinFinal: cfg.MinFinalAttempts, MinDelivered: cfg.MinDelivered,
		},
		Scope: cfg.PauseScope, AutoResumeAfter: cfg.AutoResumeAfter,
		Released: r.release, Logger: r.log,
		Once: func(ctx context.Context) bool { return r.once(ctx, leaseAutoResume) },
	})
	if err := r.rep.guard.Load(context.Background()); err != nil {
		return err
	}
	r.qs.KeepRates(r.rep.guard.Touch)
	r.registerReputationGauges()
	return nil
}

// release lets a resumed tenant's held mail go at once.
func (r *Relay) release(ctx context.Context, t string) {
	n, err := r.qs.Release(context.WithoutCancel(ctx), t, time.Now())
	if err != nil {
		r.log.Error("heed: releasing a resumed tenant's mail", "tenant", t, "err", err)
	}
	r.log.Info("heed: a resumed tenant's held mail is due again", "tenant", t, "recipients", n)
	if r.queue != nil {
		r.queue.Kick()
	}
}

// held is queue.Options.Held: the guard holds the message's tenant, or
// its marketing list.
func (r *Relay) held(m *queue.Message) bool {
	if _, paused := r.rep.guard.Paused(m.Tenant); !paused {
		return false
	}
	marketing := true // a list that cannot be read is held, not sent
	if l, err := r.tenants.List(context.Background(), m.Tenant, m.List); err == nil {
		marketing = l.Kind == tenant.Marketing
	}
	return r.rep.guard.Holds(m.Tenant, marketing)
}

// complaintRate is readiness.Options.ComplaintRate.
func (r *Relay) complaintRate(ctx context.Context, t, domain string) (readiness.Rate, error) {
	c, win, err := r.rep.rates.ComplaintRate(ctx, t, domain)
	return readiness.Rate{Complaints: c.Complaints, Delivered: c.Delivered, Window: win}, err
}

// complaints is the suppression list the inbound listener writes
// reports through: each complaint counts in its tenant's complaint rate,
// each hard bounce a DSN reports in its bounce rate.
func (r *Relay) complaints() *reputation.Complaints {
	return &reputation.Complaints{
		Store: r.suppressions, Service: r.suppressions, Tx: r.st.reputation,
		Domain: func(ctx context.Context, id string) string {
			m, err := r.qs.Message(ctx, id)
			if err != nil {
				return ""
			}
			return m.SendingDomain()
		},
		Touched: r.rep.guard.Touch,
	}
}

// registerReputationGauges exports each tenant's rates over the short
// window and whether it is paused. Series: four per tenant (bounce and
// complaint rate, and the pause); no domain label, so that a tenant's
// domains do not multiply them: the admin API has the per-domain
// figures.
func (r *Relay) registerReputationGauges() {
	each := func(emit func(t tenant.Tenant, rep reputation.Report)) error {
		ctx := context.Background()
		ts, err := r.tenants.Tenants(ctx)
		if err != nil {
			return err
		}
		for _, t := range ts {
			rep, err := r.rep.rates.Report(ctx, t.ID)
			if err != nil {
				return err
			}
			emit(t, rep)
		}
		return nil
	}
	r.metrics.SharedGaugeVec("heed_tenant_bounce_rate", "Hard bounces ÷ final delivery attempts of a tenant over the last 24 hours.",
		[]string{"tenant"}, func(emit func(float64, ...string)) error {
			return each(func(t tenant.Tenant, rep reputation.Report) { emit(rep.Windows[0].BounceRate, t.ID) })
		})
	r.metrics.SharedGaugeVec("heed_tenant_complaint_rate", "Complaints ÷ deliveries of a tenant over the last 24 hours.",
		[]string{"tenant"}, func(emit func(float64, ...string)) error {
			return each(func(t tenant.Tenant, rep reputation.Report) { emit(rep.Windows[0].ComplaintRate, t.ID) })
		})
	r.metrics.GaugeVec("heed_tenant_paused", "1 when the reputation guard or the operator paused the tenant.",
		[]string{"tenant"}, func(emit func(float64, ...string)) error {
			ts, err := r.tenants.Tenants(context.Background())
			if err != nil {
				return err
			}
			for _, t := range ts {
				_, p := r.rep.guard.Paused(t.ID)
				v := 0.0
				if p {
					v = 1
				}
				emit(v, t.ID)
			}
			return nil
		})
}
