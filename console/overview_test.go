package console_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// chartOf is the accessible name of a chart: its title, which lists
// every count.
var chartOf = regexp.MustCompile(`<title id="c-[^"]*">([^<]*)</title>`)

// TestOverviewTotal: an operator's overview has every tenant's counts
// together before each tenant's (the issue: "per tenant and in total");
// a tenant's user sees their tenant's alone, no total of others.
func TestOverviewTotal(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.mail("acme", events.MessageDelivered, 2)
	e.mail("globex", events.MessageDelivered, 3)
	e.mail("globex", events.MessageBounced, 1)

	st, body, _ := e.get(e.signedIn("ops"), "/console/overview")
	charts := chartOf.FindAllStringSubmatch(body, -1)
	if st != http.StatusOK || len(charts) != 3 {
		t.Fatalf("operator's overview: %d, %d charts, want 3 (total, acme, globex)", st, len(charts))
	}
	if c := charts[0][1]; !strings.HasPrefix(c, "Events of All tenants") ||
		!strings.Contains(c, "message.delivered 5") || !strings.Contains(c, "message.bounced 1") {
		t.Errorf("the first chart is %q, want every tenant's: 5 delivered, 1 bounced", c)
	}

	st, body, _ = e.get(e.signedIn("pat"), "/console/overview")
	charts = chartOf.FindAllStringSubmatch(body, -1)
	if st != http.StatusOK || len(charts) != 1 || !strings.Contains(charts[0][1], "message.delivered 2") || strings.Contains(body, "All tenants") {
		t.Errorf("a tenant user's overview: %d, charts %q", st, charts)
	}
}

// mailAt writes n events of ty to tenantID's log, dated at.
func (e *env) mailAt(tenantID string, ty events.Type, at time.Time, n int) {
	e.t.Helper()
	log := boltdb.Events(e.db)
	for i := range n {
		ev := &events.Event{ID: fmt.Sprintf("%s-%s-%s-%d", tenantID, ty, at.Format(time.RFC3339), i), Type: ty, Time: at,
			Data: events.Data{Tenant: tenantID, MessageID: fmt.Sprintf("m%d", i), Recipient: "r@example.net"}}
		if err := log.Record(context.Background(), ev); err != nil {
			e.t.Fatal(err)
		}
	}
}

// article is the part of an overview page about one tenant's chart
// (name as in its heading), "" when the page has none.
func article(body, name string) string {
	for _, a := range strings.Split(body, "<article")[1:] {
		if strings.Contains(a, ">"+name) {
			return a
		}
	}
	return ""
}

var cells = regexp.MustCompile(`<td>([0-9]+)</td>`)

// countsAt is the row of an article's table for the step starting at at:
// the count of each of the six kinds of event, in the page's order.
func countsAt(t *testing.T, a string, at time.Time) []int {
	t.Helper()
	head := `<th scope="row"><time datetime="` + at.UTC().Format(time.RFC3339) + `">`
	i := strings.Index(a, head)
	if i < 0 {
		t.Fatalf("no row for %s in:\n%s", at.UTC().Format(time.RFC3339), a)
	}
	row := a[i : i+strings.Index(a[i:], "</tr>")]
	var out []int
	for _, m := range cells.FindAllStringSubmatch(row, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// TestOverviewOverTime: the overview charts each kind of event by hour
// over the last 24 hours (?span=7d: by day over 7), each count in the
// hour it happened, an event older than the span left out; a tenant's
// user sees only their tenant's counts; an operator sees every tenant's
// together too.
func TestOverviewOverTime(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	now := e.clock.Now()
	hour := func(d time.Duration) time.Time { return now.Add(-d).UTC().Truncate(time.Hour) }
	// Oldest first, as the log is written.
	e.mailAt("acme", events.MessageDelivered, now.Add(-30*time.Hour), 4) // before the day
	e.mailAt("acme", events.MessageDelivered, now.Add(-23*time.Hour), 2) // the first hour
	e.mailAt("acme", events.MessageBounced, now.Add(-time.Hour), 1)
	e.mailAt("globex", events.MessageDelivered, now.Add(-time.Hour), 5)
	e.mailAt("globex", events.RecipientComplained, now.Add(-time.Hour), 1)
	e.mailAt("acme", events.MessageAccepted, now, 3) // the current hour

	// accepted, delivered, deferred, bounced, suppressed, complaints
	st, body, _ := e.get(e.signedIn("pat"), "/console/overview")
	acme := article(body, "Acme Dental")
	if st != http.StatusOK || acme == "" || strings.Contains(body, "Globex") || strings.Contains(body, "All tenants") {
		t.Fatalf("a tenant user's overview: %d\n%s", st, body)
	}
	for _, c := range []struct {
		at   time.Time
		want []int
	}{
		{hour(23 * time.Hour), []int{0, 2, 0, 0, 0, 0}},
		{hour(time.Hour), []int{0, 0, 0, 1, 0, 0}}, // not globex's 5 deliveries
		{hour(0), []int{3, 0, 0, 0, 0, 0}},
		{hour(12 * time.Hour), []int{0, 0, 0, 0, 0, 0}},
	} {
		if got := countsAt(t, acme, c.at); !slices.Equal(got, c.want) {
			t.Errorf("acme's hour %s: %v, want %v", c.at.Format(time.RFC3339), got, c.want)
		}
	}
	if n := strings.Count(acme, `<th scope="row"><time`); n != 24 {
		t.Errorf("acme's table has %d hours, want 24", n)
	}
	if c := chartOf.FindStringSubmatch(acme); c == nil || !strings.Contains(c[1], "message.delivered 2:") {
		t.Errorf("acme's chart is named %q, want 2 delivered in the day (not the 4 before it)", c)
	}
	if want := fmt.Sprintf("<title>%s: 1 message.bounced</title>", hour(time.Hour).Format("Mon 15:04")); !strings.Contains(acme, want) {
		t.Errorf("acme's chart has no bar %q", want)
	}

	st, body, _ = e.get(e.signedIn("ops"), "/console/overview")
	all := article(body, "All tenants")
	if st != http.StatusOK || all == "" || article(body, "Globex Clinic") == "" {
		t.Fatalf("the operator's overview: %d\n%s", st, body)
	}
	if got, want := countsAt(t, all, hour(time.Hour)), []int{0, 5, 0, 1, 0, 1}; !slices.Equal(got, want) {
		t.Errorf("every tenant's hour before this one: %v, want %v", got, want)
	}

	st, body, _ = e.get(e.signedIn("ops"), "/console/overview?span=7d")
	acme = article(body, "Acme Dental")
	if st != http.StatusOK || strings.Count(acme, `<th scope="row"><time`) != 7 {
		t.Fatalf("the week's overview: %d\n%s", st, acme)
	}
	want := map[time.Time][]int{}
	for _, ev := range []struct {
		at time.Time
		i  int
		n  int
	}{{now.Add(-30 * time.Hour), 1, 4}, {now.Add(-23 * time.Hour), 1, 2}, {now.Add(-time.Hour), 3, 1}, {now, 0, 3}} {
		day := ev.at.UTC().Truncate(24 * time.Hour)
		if want[day] == nil {
			want[day] = make([]int, 6)
		}
		want[day][ev.i] += ev.n
	}
	for day, w := range want {
		if got := countsAt(t, acme, day); !slices.Equal(got, w) {
			t.Errorf("acme's day %s: %v, want %v", day.Format(time.DateOnly), got, w)
		}
	}

	if st, _, _ := e.get(e.signedIn("ops"), "/console/overview?span=1y"); st != http.StatusBadRequest {
		t.Errorf("span=1y: %d, want 400", st)
	}
}

// TestOverviewCapped: past the bound on the events one view reads, the
// chart says it stopped and when, rather than show the later hours as
// quiet; the total says so too.
func TestOverviewCapped(t *testing.T) {
	e := newEnv(t, func(o *console.Options) { o.OverviewMaxEvents = 3 })
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	now := e.clock.Now()
	for h := 5; h >= 1; h-- {
		e.mailAt("acme", events.MessageDelivered, now.Add(-time.Duration(h)*time.Hour), 1)
	}
	e.mailAt("globex", events.MessageDelivered, now, 2)

	st, body, _ := e.get(e.signedIn("ops"), "/console/overview")
	third := now.Add(-3 * time.Hour).UTC().Format(time.RFC3339)
	stopped := `the count stopped after 3 events of %s, at <time datetime="` + third + `">`
	if acme := article(body, "Acme Dental"); st != http.StatusOK || !strings.Contains(acme, fmt.Sprintf(stopped, "this tenant")) {
		t.Errorf("acme's chart does not say where its count stopped: %d\n%s", st, acme)
	}
	if all := article(body, "All tenants"); !strings.Contains(all, fmt.Sprintf(stopped, "one tenant")) {
		t.Errorf("the total does not say a count stopped:\n%s", all)
	}
	if globex := article(body, "Globex Clinic"); strings.Contains(globex, "stopped") {
		t.Errorf("globex's chart, 2 events, says it stopped:\n%s", globex)
	}
}
