package reputation

import (
	"context"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
)

// Complaints is the suppression list as the inbound listener uses it,
// with what the reports it receives say counted in the rates of the
// message's tenant and sending domain, in the transaction that records
// them: each new complaint entry (an ARF report) in the complaint rate,
// each hard bounce reported by a DSN in the bounce rate. The counter and
// the events commit together or not at all. Every other call goes to
// Store as it is.
type Complaints struct {
	suppression.Store
	// Service adds the entry (suppression.Service.AddTx, BounceTx)
	// through the transaction of Tx, which must be kept by the same
	// backend.
	Service *suppression.Service
	Tx      txn.Runner[Tx]
	// Domain names the sending domain of a message ("" when unknown).
	Domain func(ctx context.Context, messageID string) string
	// Touched hears of the tenant after the commit (Guard.Touch).
	Touched func(tenant string)
	// Now dates a report whose entry has no time (default time.Now).
	Now func() time.Time
}

// Add implements suppression.Store. A complaint counts once: a second
// report of the same address (created == false) does not count again.
func (c *Complaints) Add(ctx context.Context, e suppression.Entry, also ...events.Type) (bool, error) {
	if e.Reason != suppression.Complaint {
		return c.Store.Add(ctx, e, also...)
	}
	domain := c.domain(ctx, e.MessageID)
	var created bool
	err := c.Tx.Update(ctx, func(tx Tx) error {
		var err error
		if created, err = c.Service.AddTx(tx, e, also...); err != nil || !created {
			return err
		}
		return tx.Reputation().Add(e.Tenant, domain, Hour(c.at(e.Time)), Counts{Complaints: 1})
	})
	if err == nil && created && c.Touched != nil {
		c.Touched(e.Tenant)
	}
	return created, err
}

// Bounce implements suppression.Store: a hard bounce reported by a DSN
// (after the 250 that counted its attempt Final and Delivered) adds one
// hard bounce to the hour it arrived in, in the transaction of its event
// and its suppression entry; Final is not counted again. A soft one
// counts nothing, as at delivery (Count), even when it escalates to a
// suppression.
//
// A hard bounce counts only when it created the address's Bounce entry.
// The entry is the one record of the address written in the bounce's own
// transaction, so it is what tells a replayed or resent DSN (or a second
// report of the same message and recipient) from a first one: a repeat
// finds the entry there and counts nothing. Counting instead by message
// would need a record of every DSN ever counted. The cost is small: a DSN
// of a second message to an address already suppressed as bounced does
// not count, and such a message went out before the first bounce was
// known, since a suppressed address is not tried.
func (c *Complaints) Bounce(ctx context.Context, f suppression.Failure, ev *events.Event) (bool, error) {
	if !f.Hard {
		return c.Store.Bounce(ctx, f, ev)
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	domain := c.domain(ctx, f.MessageID)
	var suppressed bool
	err := c.Tx.Update(ctx, func(tx Tx) error {
		suppressed = false // fn may run more than once
		if ev != nil {
			if err := events.Append(tx.Events(), ev); err != nil {
				return err
			}
		}
		var err error
		if suppressed, err = c.Service.BounceTx(tx, f); err != nil || !suppressed {
			return err
		}
		return tx.Reputation().Add(f.Tenant, domain, Hour(c.at(f.Time)), Counts{HardBounces: 1})
	})
	if err == nil && suppressed && c.Touched != nil {
		c.Touched(f.Tenant)
	}
	return suppressed, err
}

// domain is the sending domain of message id, "" when unknown.
func (c *Complaints) domain(ctx context.Context, id string) string {
	if c.Domain == nil || id == "" {
		return ""
	}
	return c.Domain(ctx, id)
}

// at is t, or now when t is zero.
func (c *Complaints) at(t time.Time) time.Time {
	if !t.IsZero() {
		return t
	}
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
