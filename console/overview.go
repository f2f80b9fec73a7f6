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

// maxCounted is the default of Options.OverviewMaxEvents: beyond it the
// page says where the count stopped.
const maxCounted = 100000

// countPage is how many events one read of the log returns.
const countPage = 1000

// A chartSpan is what the overview charts: Steps steps of Step, the last one
// holding now. Steps start on whole UTC hours or days, so that a bar is
// the same hour on every page view and in every tenant's chart.
type chartSpan struct {
	Key   string // the span query parameter's value
	Name  string // "the last 24 hours"
	Label string // of its link
	Unit  string // of a step, for "per hour"
	Step  time.Duration
	Steps int
}

var spans = []chartSpan{
	{Key: "24h", Name: "the last 24 hours", Label: "Last 24 hours, by hour", Unit: "hour", Step: time.Hour, Steps: 24},
	{Key: "7d", Name: "the last 7 days", Label: "Last 7 days, by day", Unit: "day", Step: 24 * time.Hour, Steps: 7},
}

// start is the first step's start at now: time.Truncate counts from the
// zero time, in UTC, so hours and days start on UTC boundaries.
func (sp chartSpan) start(now time.Time) time.Time {
	return now.UTC().Truncate(sp.Step).Add(-time.Duration(sp.Steps-1) * sp.Step)
}

// tally is one tenant's counts in a span: N[step][i] of chartTypes[i].
type tally struct {
	N [][]int
	// Capped says the count stopped at Limit events; CountedTo is the
	// time of the last event counted, after which steps are short.
	Capped    bool
	Limit     int
	CountedTo time.Time
}

func newTally(steps int) tally {
	t := tally{N: make([][]int, steps)}
	for i := range t.N {
		t.N[i] = make([]int, len(chartTypes))
	}
	return t
}

// add adds o to t (for the total of every tenant).
func (t *tally) add(o tally) {
	for i := range o.N {
		for j, n := range o.N[i] {
			t.N[i][j] += n
		}
	}
	if o.Capped && (!t.Capped || o.CountedTo.Before(t.CountedTo)) {
		t.Capped, t.Limit, t.CountedTo = true, o.Limit, o.CountedTo
	}
}

type overviewData struct {
	Operator       bool
	QueueDepth     int
	WebhookBacklog int
	Span           chartSpan
	Spans          []chartSpan
	Since          time.Time
	// Total sums every tenant's counts, for an operator of more than one
	// tenant (nil otherwise).
	Total   *tenantChart
	Tenants []tenantChart
}

// overview shows what happened over the last day (or week, with
// ?span=7d): per tenant (all for an operator, one for a tenant's user)
// each kind of event by hour (or day) as a chart and a table; and to an
// operator, the queue depth and webhook backlog.
func (s *server) overview(w http.ResponseWriter, r *http.Request, v *visit) {
	ctx := r.Context()
	sp, ok := spanOf(r.URL.Query().Get("span"))
	if !ok {
		s.fail(w, r, http.StatusBadRequest, `The overview spans "24h" or "7d".`)
		return
	}
	now := s.Now()
	d := overviewData{Operator: v.operator(), Span: sp, Spans: spans, Since: sp.start(now)}
	ts, err := s.overviewTenants(ctx, v, &d)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// One look-up of where the span starts in the log serves every tenant.
	var after uint64
	if s.Events != nil {
		if after, err = s.Events.Since(ctx, d.Since); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	total := newTally(sp.Steps)
	for _, t := range ts {
		c, err := s.count(ctx, t.ID, after, sp, d.Since)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		total.add(c)
		d.Tenants = append(d.Tenants, chart(t.ID, t.Name, sp, d.Since, c))
	}
	if d.Operator && len(ts) > 1 {
		all := chart("", "All tenants", sp, d.Since, total) // no tenant's id is empty
		d.Total = &all
	}
	s.render(w, r, http.StatusOK, "overview", page{Title: "Overview", User: v, CSRF: v.sess.CSRF, Data: d})
}

func spanOf(key string) (chartSpan, bool) {
	if key == "" {
		return spans[0], true
	}
	for _, sp := range spans {
		if sp.Key == key {
			return sp, true
		}
	}
	return chartSpan{}, false
}

// overviewTenants returns the tenants v may see (every tenant for an
// operator, v's own otherwise) and fills in the relay's figures for an
// operator.
func (s *server) overviewTenants(ctx context.Context, v *visit, d *overviewData) ([]tenant.Tenant, error) {
	if !v.operator() {
		t, err := s.Tenants.Tenant(ctx, v.user.Tenant)
		return []tenant.Tenant{t}, err
	}
	ts, err := s.Tenants.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	if s.QueueDepth != nil {
		if d.QueueDepth, err = s.QueueDepth(); err != nil {
			return nil, err
		}
	}
	if s.WebhookBacklog != nil {
		if d.WebhookBacklog, err = s.WebhookBacklog(ctx); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// count reads tenantID's events after the sequence number after once, in
// pages of countPage (each a read transaction of its own, so no page view
// holds the log for long), and counts those since start into sp's steps;
// it stops at OverviewMaxEvents.
func (s *server) count(ctx context.Context, tenantID string, after uint64, sp chartSpan, start time.Time) (tally, error) {
	c := newTally(sp.Steps)
	if s.Events == nil {
		return c, nil
	}
	limit := s.OverviewMaxEvents
	if limit <= 0 {
		limit = maxCounted
	}
	page := min(countPage, limit)
	index := make(map[events.Type]int, len(chartTypes))
	for i, ty := range chartTypes {
		index[ty] = i
	}
	for read := 0; ; {
		evs, err := s.Events.Events(ctx, tenantID, after, page)
		if err != nil {
			return c, err
		}
		for _, ev := range evs {
			j, ok := index[ev.Type]
			if !ok || ev.Time.Before(start) {
				continue // Since reads from a little earlier
			}
			// An event dated after now (another node's clock ahead of
			// this one's) counts in the current step.
			c.N[min(int(ev.Time.Sub(start)/sp.Step), sp.Steps-1)][j]++
		}
		read += len(evs)
		if len(evs) < page {
			return c, nil
		}
		after = evs[len(evs)-1].Seq
		if read >= limit {
			c.Capped, c.Limit, c.CountedTo = true, limit, evs[len(evs)-1].Time.UTC()
			return c, nil
		}
	}
}
