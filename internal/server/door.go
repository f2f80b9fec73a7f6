package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/readiness"
)

// doorWarner is the warning at the door (issue 18 item 4): a tenant that
// sends marketing mail from a domain whose readiness report has a failing
// check gets a domain.readiness_failed event, at most once a day per
// tenant and domain, so that the SaaS app can show it to its customer. It
// is a warning, never a refusal, and it never delays the 250: the report
// is made in the background, at most once per reportEvery per domain,
// after the first marketing message that finds none fresh.
type doorWarner struct {
	checker *readiness.Checker
	tenants interface {
		readinessSubject(ctx context.Context, tenant, domain string) (readiness.Subject, error)
	}
	events *events.Log
	now    func() time.Time
	log    interface {
		Warn(msg string, args ...any)
	}

	mu       sync.Mutex
	warned   map[string]time.Time // tenant and domain → last warning
	checked  map[string]time.Time // tenant and domain → last report
	inflight map[string]bool
	wg       sync.WaitGroup
}

const (
	warnEvery   = 24 * time.Hour
	reportEvery = 6 * time.Hour
	// reportTimeout bounds one background report, DNS included.
	reportTimeout = 30 * time.Second
)

// sent hears of one marketing message of tenant from domain, queued.
func (d *doorWarner) sent(tenant, domain string) {
	key := tenant + "\x00" + domain
	now := d.now()
	d.mu.Lock()
	if d.inflight[key] || now.Sub(d.warned[key]) < warnEvery || now.Sub(d.checked[key]) < reportEvery {
		d.mu.Unlock()
		return
	}
	d.inflight[key] = true
	d.checked[key] = now
	d.mu.Unlock()
	d.wg.Go(func() {
		defer func() {
			d.mu.Lock()
			delete(d.inflight, key)
			d.mu.Unlock()
		}()
		d.check(tenant, domain, key)
	})
}

func (d *doorWarner) check(tenant, domain, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
	defer cancel()
	s, err := d.tenants.readinessSubject(ctx, tenant, domain)
	if err != nil {
		return // the domain went between the 250 and now
	}
	rep, err := d.checker.Report(ctx, s)
	if err != nil {
		return
	}
	failed := rep.Failed()
	if len(failed) == 0 {
		return
	}
	err = d.events.Record(ctx, &events.Event{
		Type: events.DomainReadinessFailed, Time: d.now(),
		Data: events.Data{Tenant: tenant, Domain: domain,
			Reason: "marketing mail was sent from " + domain + ", whose readiness report fails: " + strings.Join(failed, ", ") +
				"; GET /api/v1/tenants/" + tenant + "/domains/" + domain + "/readiness says what to fix"},
	})
	if err != nil {
		d.log.Warn("heed: the readiness warning could not be recorded", "tenant", tenant, "domain", domain, "err", err)
		return
	}
	d.mu.Lock()
	d.warned[key] = d.now()
	d.mu.Unlock()
}

// wait returns once no report is being made (shutdown, tests).
func (d *doorWarner) wait() { d.wg.Wait() }

// readinessSubject is what a readiness report of tenant's domain needs.
func (r *Relay) readinessSubject(ctx context.Context, tenant, domain string) (readiness.Subject, error) {
	t, err := r.tenants.Tenant(ctx, tenant)
	if err != nil {
		return readiness.Subject{}, err
	}
	keys, err := r.tenants.Keys(ctx, domain)
	if err != nil {
		return readiness.Subject{}, err
	}
	return readiness.Subject{Tenant: t, Domain: domain, Keys: keys}, nil
}
