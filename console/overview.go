package console

import (
	"context"
	"net/http"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// chartTypes are the events the overview counts, in the order.
var chartTypes = []events.Type{
	events.MessageAccepted, events.MessageDelivered, events.MessageDeferred,
	events.MessageBounced, events.MessageSuppressed, events.RecipientComplained,
}

const (
	// overviewSpan is the time the overview counts events over.
	overviewSpan = 24 * time.Hour
	// maxCounted bounds the events read per tenant for one overview, so
	// that a busy tenant's page costs a bounded read; beyond it the page
	// says "at least".
	maxCounted = 100000
	// barMax is the longest bar of the chart, in SVG units.
	barMax = 400
)

type bar struct {
	Type  events.Type
	N     int
	Width int // of the bar, in SVG units, against the tenant's largest
	Y     int
}

type tenantSummary struct {
	ID, Name string
	Bars     []bar
	Capped   bool
	Height   int // of the chart
}

type overviewData struct {
	Operator       bool
	QueueDepth     int
	WebhookBacklog int
	Since          time.Time
	// Total sums every tenant's counts, for an operator of more than one
	// tenant (nil otherwise).
	Total   *tenantSummary
	Tenants []tenantSummary
}

// overview shows what happened over the last day: per tenant (all for an
// operator, one for a tenant's user) the count of each kind of event as a
// bar chart; and to an operator, the queue depth and webhook backlog.
func (s *server) overview(w http.ResponseWriter, r *http.Request, v *visit) {
	ctx := r.Context()
	d := overviewData{Operator: v.operator(), Since: s.Now().Add(-overviewSpan).UTC()}
	var ts []tenant.Tenant
	if v.operator() {
		var err error
		if ts, err = s.Tenants.Tenants(ctx); err != nil {
			s.internal(w, r, err)
			return
		}
		if s.QueueDepth != nil {
			if d.QueueDepth, err = s.QueueDepth(); err != nil {
				s.internal(w, r, err)
				return
			}
		}
		if s.WebhookBacklog != nil {
			if d.WebhookBacklog, err = s.WebhookBacklog(ctx); err != nil {
				s.internal(w, r, err)
				return
			}
		}
	} else {
		t, err := s.Tenants.Tenant(ctx, v.user.Tenant)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		ts = []tenant.Tenant{t}
	}
	total, capped := map[events.Type]int{}, false
	for _, t := range ts {
		counts, c, err := s.count(ctx, t, d.Since)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		for ty, n := range counts {
			total[ty] += n
		}
		capped = capped || c
		d.Tenants = append(d.Tenants, chart(t.ID, t.Name, counts, c))
	}
	if d.Operator && len(ts) > 1 {
		all := chart("", "All tenants", total, capped) // no tenant's id is empty
		d.Total = &all
	}
	s.render(w, r, http.StatusOK, "overview", page{Title: "Overview", User: v, CSRF: v.sess.CSRF, Data: d})
}

// count counts t's events since the cutoff, and says whether it
// stopped at maxCounted.
func (s *server) count(ctx context.Context, t tenant.Tenant, since time.Time) (map[events.Type]int, bool, error) {
	counts := map[events.Type]int{}
	if s.Events == nil {
		return counts, false, nil
	}
	after, err := s.Events.Since(ctx, since)
	if err != nil {
		return nil, false, err
	}
	for read := 0; ; {
		evs, err := s.Events.Events(ctx, t.ID, after, 1000)
		if err != nil {
			return nil, false, err
		}
		for _, ev := range evs {
			if !ev.Time.Before(since) {
				counts[ev.Type]++
			}
		}
		read += len(evs)
		if len(evs) < 1000 {
			return counts, false, nil
		}
		if read >= maxCounted {
			return counts, true, nil
		}
		after = evs[len(evs)-1].Seq
	}
}

// chart is the bar chart of counts.
func chart(id, name string, counts map[events.Type]int, capped bool) tenantSummary {
	sum := tenantSummary{ID: id, Name: name, Capped: capped}
	most := 1
	for _, ty := range chartTypes {
		most = max(most, counts[ty])
	}
	for i, ty := range chartTypes {
		n := counts[ty]
		sum.Bars = append(sum.Bars, bar{Type: ty, N: n, Width: n * barMax / most, Y: i * 28})
	}
	sum.Height = len(chartTypes) * 28
	return sum
}
