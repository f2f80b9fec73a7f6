package console

import (
	"fmt"
	"time"

	"github.com/heedmail/heed/internal/events"
)

// The chart's geometry, in SVG units: a column of labels, the plot with
// one slot per step, and a column of totals; one row per kind of event
// (small multiples, so that no reader needs colour to tell the series
// apart), then the time axis.
const (
	chartWidth = 720
	plotX      = 180 // where the plot starts
	plotWidth  = 480
	rowHeight  = 48
	barTop     = 8  // from the row's top to the highest bar's top
	barMax     = 32 // the highest bar
	axisHeight = 28
)

// barRect is one step's bar of one series.
type barRect struct {
	X, Y, W, H, N int
	When          string // the step, for the bar's tooltip
}

// seriesRow is one kind of event's row of the chart.
type seriesRow struct {
	Type         events.Type
	Class        string // its colour
	Total, Peak  int
	Y, Base      int // the row's top and the bars' baseline
	LabelY, SubY int
	Bars         []barRect
}

// tick is one label of the time axis.
type tick struct {
	X     int
	Label string
}

// stepRow is one step of the table under the chart.
type stepRow struct {
	At    time.Time
	Label string
	N     []int
}

// tenantChart is one tenant's (or every tenant's) chart and table.
type tenantChart struct {
	ID, Name  string
	Span      chartSpan
	Series    []seriesRow
	Ticks     []tick
	Rows      []stepRow
	Totals    []int
	Capped    bool
	Limit     int
	CountedTo time.Time
	Height    int
	PlotEnd   int // the plot's right edge
	AxisY     int // the time labels' baseline
}

// stepLabel names a step: "Mon 15:00" for an hour, "Mon 6 Dec" for a day.
func (sp chartSpan) stepLabel(t time.Time) string {
	if sp.Step < 24*time.Hour {
		return t.UTC().Format("Mon 15:04")
	}
	return t.UTC().Format("Mon 2 Jan")
}

// chart lays out c, counted in sp's steps from start, as one row of bars
// per kind of event, each scaled to its own peak (written beside it), so
// that a handful of complaints shows beside thousands of deliveries.
func chart(id, name string, sp chartSpan, start time.Time, c tally) tenantChart {
	ch := tenantChart{ID: id, Name: name, Span: sp, Capped: c.Capped, Limit: c.Limit, CountedTo: c.CountedTo,
		Height: len(chartTypes)*rowHeight + axisHeight, Totals: make([]int, len(chartTypes))}
	slot := plotWidth / sp.Steps
	gap := max(2, slot/8)
	ch.PlotEnd = plotX + slot*sp.Steps
	ch.AxisY = len(chartTypes)*rowHeight + 18
	for i := range sp.Steps {
		at := start.Add(time.Duration(i) * sp.Step)
		ch.Rows = append(ch.Rows, stepRow{At: at, Label: sp.stepLabel(at), N: c.N[i]})
		// Every step of a week; every sixth hour of a day, on the UTC
		// hours 0, 6, 12 and 18.
		if sp.Step >= 24*time.Hour || at.UTC().Hour()%6 == 0 {
			ch.Ticks = append(ch.Ticks, tick{X: plotX + i*slot, Label: sp.stepLabel(at)})
		}
	}
	for j, ty := range chartTypes {
		row := seriesRow{Type: ty, Class: fmt.Sprintf("s%d", j), Y: j * rowHeight}
		row.Base = row.Y + barTop + barMax
		row.LabelY, row.SubY = row.Y+22, row.Y+40
		for i := range sp.Steps {
			row.Total += c.N[i][j]
			row.Peak = max(row.Peak, c.N[i][j])
		}
		ch.Totals[j] = row.Total
		for i := range sp.Steps {
			n := c.N[i][j]
			if n == 0 {
				continue // the baseline shows an empty step
			}
			h := max(1, n*barMax/row.Peak) // a single event stays visible
			row.Bars = append(row.Bars, barRect{X: plotX + i*slot + gap/2, Y: row.Base - h, W: slot - gap, H: h, N: n,
				When: ch.Rows[i].Label})
		}
		ch.Series = append(ch.Series, row)
	}
	return ch
}
