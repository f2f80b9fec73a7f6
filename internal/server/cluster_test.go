package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// waitRefusal submits through e until check accepts the answer (nil: the
// message was accepted), for up to 10 s, and returns the last answer.
func (e *relayEnv) waitRefusal(user, pass, what string, check func(*smtp.SMTPError) bool) *smtp.SMTPError {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		se := e.refusal(user, pass, reminderMsg)
		if check(se) {
			return se
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: still %v", what, se)
		}
		<-tick.C
	}
}

// TestTwoNodesShareChanges: two relays on one PostgreSQL. Node 2 has just
// accepted a tenant's mail, so it holds the tenant, its domain and its
// list in memory; node 1's admin API then pauses the tenant, resumes it
// and removes its domain. Node 2's submission follows each change without
// a restart or a write of its own. The periodic jobs run on one of them.
func TestTwoNodesShareChanges(t *testing.T) {
	e1 := startRelayOn(t, config.DriverPostgres, testsink.Options{}, nil)
	e2 := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		c.Storage.Driver = config.DriverPostgres
		c.Storage.Postgres.DSN, c.Storage.Postgres.MaxConns = e1.cfg.Storage.Postgres.DSN, 8
		c.Delivery.Routes = e1.cfg.Delivery.Routes
	})
	user, pass, _ := e1.tenantSetup()
	e2.waitRefusal(user, pass, "node 2 never accepted the new tenant's mail", func(se *smtp.SMTPError) bool { return se == nil })

	e1.api("POST", "/api/v1/tenants/acme/pause", map[string]string{"reason": "bought list"}, http.StatusOK, nil)
	e2.waitRefusal(user, pass, "node 2 still accepts a tenant paused on node 1", func(se *smtp.SMTPError) bool {
		return se != nil && strings.Contains(se.Message, "bought list")
	})
	e1.api("POST", "/api/v1/tenants/acme/resume", nil, http.StatusOK, nil)
	e2.waitRefusal(user, pass, "node 2 still refuses a tenant resumed on node 1", func(se *smtp.SMTPError) bool { return se == nil })

	e1.api("DELETE", "/api/v1/tenants/acme/domains/acme.test", nil, http.StatusNoContent, nil)
	e2.waitRefusal(user, pass, "node 2 still accepts mail from a domain removed on node 1", func(se *smtp.SMTPError) bool {
		return se != nil && se.Code == 550 && se.EnhancedCode == (smtp.EnhancedCode{5, 7, 1}) && strings.Contains(se.Message, "acme.test")
	})

	// Node 1 started first and ran the retention job at its start: it
	// keeps the job, node 2 does not run it.
	ctx := context.Background()
	if !e1.r.once(ctx, leaseRetention) || e2.r.once(ctx, leaseRetention) {
		t.Errorf("the retention job's lease: node 1 %v, node 2 %v; want node 1 only",
			e1.r.once(ctx, leaseRetention), e2.r.once(ctx, leaseRetention))
	}
}
