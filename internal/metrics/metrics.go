// Package metrics exposes Heed's figures in the Prometheus text format
// (prometheus/client_golang) for the admin listener's /metrics: messages
// by outcome and tenant, opt-outs by channel, the queue's depth, delivery
// latency, SMTP sessions, the webhooks' backlog and the reports kept for
// the operator.
//
// Counters of what happens are fed from the event log (events.Notice, as
// each commit lands), so they count exactly what was recorded; gauges of
// state are read when the scraper asks.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heedmail/heed/internal/events"
)

// Metrics holds the collectors of one relay.
type Metrics struct {
	reg      *prometheus.Registry
	messages *prometheus.CounterVec
	optOuts  *prometheus.CounterVec
	events   *prometheus.CounterVec
	unread   *prometheus.CounterVec
	latency  prometheus.Histogram
}

// outcomes maps the message events to their outcome label.
var outcomes = map[events.Type]string{
	events.MessageAccepted:   "accepted",
	events.MessageDelivered:  "delivered",
	events.MessageDeferred:   "deferred",
	events.MessageBounced:    "bounced",
	events.MessageSuppressed: "suppressed",
}

// New returns the collectors, with the Go runtime's and the process's.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "heed_messages_total",
			Help: "Recipients of messages by outcome (accepted, delivered, deferred, bounced, suppressed) and tenant.",
		}, []string{"tenant", "outcome"}),
		optOuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "heed_optouts_total",
			Help: "Opt-outs recorded, by channel (one-click, page, mailto, api, ...).",
		}, []string{"channel"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "heed_events_total",
			Help: "Events written to the event log (the webhooks' outbox), by type.",
		}, []string{"type"}),
		unread: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "heed_reports_unread_total",
			Help: "Reports to the return path kept for the operator in reports/unread, by reason (unparsable, unknown-message, feedback, not-actionable).",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "heed_delivery_latency_seconds",
			Help:    "Time from a message's acceptance to its delivery to a recipient's next hop.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}),
	}
	m.reg.MustRegister(m.messages, m.optOuts, m.events, m.unread, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Event counts one committed event (events.Source.Watch calls it).
func (m *Metrics) Event(n events.Notice) {
	if n.Remote {
		return // counted by the node that committed it
	}
	m.events.WithLabelValues(string(n.Type)).Inc()
	if o, ok := outcomes[n.Type]; ok {
		m.messages.WithLabelValues(n.Tenant, o).Inc()
	}
	if n.Type == events.RecipientUnsubscribed {
		channel := n.Channel
		if channel == "" {
			channel = "unknown"
		}
		m.optOuts.WithLabelValues(channel).Inc()
	}
}

// UnreadReport counts one report kept for the operator, by reason
// (unread.Store's Kept calls it). These are not events: a report that
// names no known message belongs to no tenant's event log.
func (m *Metrics) UnreadReport(reason string) { m.unread.WithLabelValues(reason).Inc() }

// Delivered observes the time a delivered recipient took from acceptance.
func (m *Metrics) Delivered(d time.Duration) { m.latency.Observe(d.Seconds()) }

// Gauge adds a gauge read at each scrape. An error of f fails the scrape
// (HTTP 500 naming the metric), so that a broken read shows as a failed
// target rather than as a missing series.
func (m *Metrics) Gauge(name, help string, f func() (float64, error)) {
	m.addFunc(name, help, prometheus.GaugeValue, f)
}

// Counter adds a counter read at each scrape; errors as for Gauge.
func (m *Metrics) Counter(name, help string, f func() (float64, error)) {
	m.addFunc(name, help, prometheus.CounterValue, f)
}

func (m *Metrics) addFunc(name, help string, kind prometheus.ValueType, f func() (float64, error)) {
	m.reg.MustRegister(&funcMetric{desc: prometheus.NewDesc(name, help, nil, nil), kind: kind, f: f})
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// funcMetric is a gauge or counter read by a function that may fail (a
// database read).
type funcMetric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	f    func() (float64, error)
}

func (g *funcMetric) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *funcMetric) Collect(ch chan<- prometheus.Metric) {
	v, err := g.f()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(g.desc, g.kind, v)
}

// GaugeVec adds a gauge with labels read at each scrape: collect calls
// emit once per series. Errors as for Gauge.
func (m *Metrics) GaugeVec(name, help string, labels []string, collect func(emit func(v float64, values ...string)) error) {
	m.reg.MustRegister(&funcVec{desc: prometheus.NewDesc(name, help, labels, nil), collect: collect})
}

type funcVec struct {
	desc    *prometheus.Desc
	collect func(emit func(v float64, values ...string)) error
}

func (g *funcVec) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *funcVec) Collect(ch chan<- prometheus.Metric) {
	err := g.collect(func(v float64, values ...string) {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, values...)
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
	}
}
