package server

import (
	"github.com/heedmail/heed/internal/health"
)

// newProbe is the node's health probe of its database (nil on bbolt: a
// file the process holds open needs none). The listeners read its state
// rather than query the database per connection: SMTP answers 421 4.3.2
// to new connections while it is down, the admin API and the public pages
// 503, /readyz says what failed.
func (r *Relay) newProbe() *health.Probe {
	if r.st.ping == nil {
		return nil
	}
	return health.New(r.st.ping, health.Options{Logger: r.log})
}

// registerHealth adds heed_database_up, on PostgreSQL: the node's own
// view, since a network fault can cut one node off and not another.
func (r *Relay) registerHealth() {
	if r.health == nil {
		return
	}
	r.metrics.Gauge("heed_database_up", "1 while this node's health probe reaches the database, 0 while it does not.", func() (float64, error) {
		if r.health.Down() {
			return 0, nil
		}
		return 1, nil
	})
}
