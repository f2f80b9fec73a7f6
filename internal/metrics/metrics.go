// Package metrics exposes Heed's figures in the Prometheus text format
// (prometheus/client_golang) for the admin listener's /metrics: messages
// by outcome and tenant, opt-outs by channel, the queue's depth, delivery
// latency, SMTP sessions, the webhooks' backlog and the reports kept for
// the operator.
//
// Counters of what happens are fed from the event log (events.Notice, as
// each commit lands), so they count exactly what was recorded; gauges of
// state are read when the scraper asks.
//
// With several nodes on one database, a series is either the node's own
// (what this process counted or holds: messages it accepted or
// delivered, its sessions, its runtime) and carries the label node, or
// the cluster's, read from the shared database (the queue's depth, the
// webhooks' backlog, the tenants' rates), the same on every node and
// without the label: sum the first over nodes, take any one node's value
// of the second (max by).
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heedmail/heed/internal/events"
)

// Options configure the collectors.
type Options struct {
	// Node is the value of the label node on the node's own series
	// (config key node; the host name by default).
	Node string
	// DatabaseDown reports that the database is known to be unreachable
	// (package health); a gauge whose read fails meanwhile is left out
	// of the scrape instead of failing it, so that the node's own series
	// still reach the scraper. nil: never.
	DatabaseDown func() bool
}

// Metrics holds the collectors of one relay.
type Metrics struct {
	o        Options
	reg      *prometheus.Registry
	node     prometheus.Registerer // reg, adding the label node
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
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		o: o, reg: reg, node: prometheus.WrapRegistererWith(prometheus.Labels{"node": o.Node}, reg),
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
	m.node.MustRegister(m.messages, m.optOuts, m.events, m.unread, m.latency,
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

// Gauge adds a gauge of the node's own, read at each scrape. An error of
// f fails the scrape (HTTP 500 naming the metric), so that a broken read
// shows as a failed target rather than as a missing series; except while
// the database is known to be down (Options.DatabaseDown), when the series
// is left out.
func (m *Metrics) Gauge(name, help string, f func() (float64, error)) {
	m.addFunc(m.node, name, help, prometheus.GaugeValue, f)
}

// Counter adds a counter of the node's own read at each scrape; errors as
// for Gauge.
func (m *Metrics) Counter(name, help string, f func() (float64, error)) {
	m.addFunc(m.node, name, help, prometheus.CounterValue, f)
}

// SharedGauge adds a gauge read from the database all nodes share: the
// cluster's value, without the label node. Errors as for Gauge.
func (m *Metrics) SharedGauge(name, help string, f func() (float64, error)) {
	m.addFunc(m.reg, name, help, prometheus.GaugeValue, f)
}

func (m *Metrics) addFunc(reg prometheus.Registerer, name, help string, kind prometheus.ValueType, f func() (float64, error)) {
	reg.MustRegister(&funcMetric{desc: prometheus.NewDesc(name, help, nil, nil), kind: kind, f: f, skip: m.skip})
}

// skip reports whether a failed read is left out of the scrape: the
// database is known to be down, which heed_database_up reports.
func (m *Metrics) skip(error) bool {
	return m.o.DatabaseDown != nil && m.o.DatabaseDown()
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
	skip func(error) bool
}

func (g *funcMetric) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *funcMetric) Collect(ch chan<- prometheus.Metric) {
	v, err := g.f()
	if err != nil && g.skip(err) {
		return
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(g.desc, g.kind, v)
}

// GaugeVec adds a gauge of the node's own with labels read at each
// scrape: collect calls emit once per series. Errors as for Gauge.
func (m *Metrics) GaugeVec(name, help string, labels []string, collect func(emit func(v float64, values ...string)) error) {
	m.node.MustRegister(&funcVec{desc: prometheus.NewDesc(name, help, labels, nil), collect: collect, skip: m.skip})
}

// SharedGaugeVec is GaugeVec read from the shared database, without the
// label node (see SharedGauge).
func (m *Metrics) SharedGaugeVec(name, help string, labels []string, collect func(emit func(v float64, values ...string)) error) {
	m.reg.MustRegister(&funcVec{desc: prometheus.NewDesc(name, help, labels, nil), collect: collect, skip: m.skip})
}

type funcVec struct {
	desc    *prometheus.Desc
	collect func(emit func(v float64, values ...string)) error
	skip    func(error) bool
}

func (g *funcVec) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *funcVec) Collect(ch chan<- prometheus.Metric) {
	err := g.collect(func(v float64, values ...string) {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, values...)
	})
	if err != nil && !g.skip(err) {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
	}
}
