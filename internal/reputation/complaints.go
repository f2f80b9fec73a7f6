package reputation

import (
	"context"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
)

// Complaints is the suppression list as the inbound listener uses it,
// with each new complaint entry counted in the complaint rate of its
// tenant and sending domain, in the entry's transaction: the counter and
// the recipient.complained event commit together or not at all. Every
// other call goes to Store as it is.
type Complaints struct {
	suppression.Store
	// Service adds the entry (suppression.Service.AddTx) through the
	// transaction of Tx, which must be kept by the same backend.
	Service *suppression.Service
	Tx      txn.Runner[Tx]
	// Domain names the sending domain of a message ("" when unknown).
	Domain func(ctx context.Context, messageID string) string
	// Touched hears of the tenant after the commit (Guard.Touch).
	Touched func(tenant string)
	// Now dates a complaint whose entry has no time (default time.Now).
	Now func() time.Time
}

// Add implements suppression.Store. A complaint counts once: a second
// report of the same address (created == false) does not count again.
func (c *Complaints) Add(ctx context.Context, e suppression.Entry, also ...events.Type) (bool, error) {
	if e.Reason != suppression.Complaint {
		return c.Store.Add(ctx, e, also...)
	}
	domain := ""
	if c.Domain != nil && e.MessageID != "" {
		domain = c.Domain(ctx, e.MessageID)
	}
	var created bool
	err := c.Tx.Update(ctx, func(tx Tx) error {
		var err error
		if created, err = c.Service.AddTx(tx, e, also...); err != nil || !created {
			return err
		}
		at := e.Time
		if at.IsZero() {
			at = time.Now()
			if c.Now != nil {
				at = c.Now()
			}
		}
		return tx.Reputation().Add(e.Tenant, domain, Hour(at), Counts{Complaints: 1})
	})
	if err == nil && created && c.Touched != nil {
		c.Touched(e.Tenant)
	}
	return created, err
}
