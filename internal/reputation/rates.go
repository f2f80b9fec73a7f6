package reputation

import (
	"context"
	"slices"
	"time"

	"github.com/heedmail/heed/internal/txn"
)

// The windows a report gives: the guard judges the short one, which
// reacts within hours; the long one is what SES and Postmaster Tools
// show, and what a tenant compares with them.
var (
	Short = Window{Name: "24h", Hours: 24}
	Long  = Window{Name: "7d", Hours: 168}
)

// Window is a rolling window of whole hours ending with the current one.
type Window struct {
	Name  string
	Hours int64
}

// from is the first hour of w at hour now.
func (w Window) from(now int64) int64 { return now - w.Hours + 1 }

// Figures are the counts of one window and the rates they make.
type Figures struct {
	Window string    `json:"window"`
	From   time.Time `json:"from"`
	Counts
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
}

func figures(w Window, now int64, c Counts) Figures {
	return Figures{Window: w.Name, From: time.Unix(w.from(now)*3600, 0).UTC(), Counts: c,
		BounceRate: c.BounceRate(), ComplaintRate: c.ComplaintRate()}
}

// DomainFigures are one sending domain's figures.
type DomainFigures struct {
	Domain  string    `json:"domain"`
	Windows []Figures `json:"windows"`
}

// Report is a tenant's rates: the whole tenant's, then each sending
// domain's, over the short and the long window.
type Report struct {
	Tenant  string          `json:"tenant"`
	At      time.Time       `json:"at"`
	Windows []Figures       `json:"windows"`
	Domains []DomainFigures `json:"domains"`
}

// Rates reads the counters.
//
// Lifecycle: built once at start over an open backend (NewRates) and
// shared; the backend under it is closed by its owner.
type Rates struct {
	tx  txn.Runner[Tx]
	now func() time.Time
}

// NewRates returns the rates kept by tx, read at the time now gives.
func NewRates(tx txn.Runner[Tx], now func() time.Time) *Rates {
	if now == nil {
		now = time.Now
	}
	return &Rates{tx: tx, now: now}
}

// Report returns tenant's figures now.
func (r *Rates) Report(ctx context.Context, tenant string) (Report, error) {
	at := r.now().UTC()
	var bs []Bucket
	err := r.tx.View(ctx, func(tx Tx) error {
		var err error
		bs, err = tx.Reputation().Buckets(tenant, Long.from(Hour(at)))
		return err
	})
	if err != nil {
		return Report{}, err
	}
	return report(tenant, at, bs, 0), nil
}

// report sums bs into the windows at at, counting only hours at or after
// since.
func report(tenant string, at time.Time, bs []Bucket, since int64) Report {
	now := Hour(at)
	windows := []Window{Short, Long}
	total := make([]Counts, len(windows))
	byDomain := map[string][]Counts{}
	for _, b := range bs {
		if b.Hour < since || b.Hour > now {
			continue
		}
		d := byDomain[b.Domain]
		if d == nil {
			d = make([]Counts, len(windows))
			byDomain[b.Domain] = d
		}
		for i, w := range windows {
			if b.Hour >= w.from(now) {
				total[i] = total[i].Add(b.Counts)
				d[i] = d[i].Add(b.Counts)
			}
		}
	}
	rep := Report{Tenant: tenant, At: at, Domains: []DomainFigures{}}
	for i, w := range windows {
		rep.Windows = append(rep.Windows, figures(w, now, total[i]))
	}
	for name, cs := range byDomain {
		df := DomainFigures{Domain: name}
		for i, w := range windows {
			df.Windows = append(df.Windows, figures(w, now, cs[i]))
		}
		rep.Domains = append(rep.Domains, df)
	}
	slices.SortFunc(rep.Domains, func(a, b DomainFigures) int {
		switch {
		case a.Domain < b.Domain:
			return -1
		case a.Domain > b.Domain:
			return 1
		}
		return 0
	})
	return rep
}

// ComplaintRate is tenant's complaint counts from domain over the long
// window (what Postmaster Tools shows), for the readiness report.
func (r *Rates) ComplaintRate(ctx context.Context, tenant, domain string) (Counts, time.Duration, error) {
	rep, err := r.Report(ctx, tenant)
	if err != nil {
		return Counts{}, 0, err
	}
	for _, d := range rep.Domains {
		if d.Domain == domain {
			return d.Windows[1].Counts, time.Duration(Long.Hours) * time.Hour, nil
		}
	}
	return Counts{}, time.Duration(Long.Hours) * time.Hour, nil
}

// Prune deletes the buckets older than the long window, in transactions
// of at most 10,000, and reports how many it deleted (the retention job).
func (r *Rates) Prune(ctx context.Context) (int, error) {
	before := Long.from(Hour(r.now()))
	total := 0
	for {
		var n int
		err := r.tx.Update(ctx, func(tx Tx) error {
			var err error
			n, err = tx.Reputation().Prune(before, 10000)
			return err
		})
		total += n
		if err != nil || n < 10000 {
			return total, err
		}
	}
}

// DeleteTenant deletes a deleted tenant's counters and guard state.
func (r *Rates) DeleteTenant(ctx context.Context, tenant string) error {
	return r.tx.Update(ctx, func(tx Tx) error { return tx.Reputation().DeleteTenant(tenant) })
}
