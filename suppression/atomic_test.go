package suppression_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/txn"
	. "github.com/heedmail/heed/suppression"
)

// failingTx is a transaction whose event log fails to write events of
// type fail: a failure half-way through a write, after its rows.
type failingTx struct {
	backend.Tx
	fail events.Type
}

func (f failingTx) Events() events.TxLog { return failingLog{f.Tx.Events(), f.fail} }

type failingLog struct {
	events.TxLog
	fail events.Type
}

var errDiskFull = errors.New("disk full")

func (l failingLog) Insert(ev *events.Event) error {
	if ev.Type == l.fail {
		return errDiskFull
	}
	return l.TxLog.Insert(ev)
}

// TestWritesAreAtomicWithTheirEvents: an opt-out, its removal and a hard
// bounce each write their rows and their events in one transaction, so a
// failure of the last event leaves none of them: no entry without its
// webhook, no webhook without its entry.
func TestWritesAreAtomicWithTheirEvents(t *testing.T) {
	eachRawBackend(t, func(t *testing.T, b backend.Backend) {
		ctx := context.Background()
		now := func() time.Time { return testNow }
		failing := func(typ events.Type) *Service {
			return New(txn.Narrow(b, func(tx backend.Tx) Tx { return failingTx{tx, typ} }), testHashKey, now)
		}
		s := New(txn.Narrow(b, func(tx backend.Tx) Tx { return tx }), testHashKey, now)
		log := events.NewLog(txn.Narrow(b.EventRunner(), func(tx backend.Tx) events.TxLog { return tx.Events() }), nil)
		const pat = "pat@example.net"

		optOut := Entry{Tenant: "acme", Address: pat, List: "news", Reason: Unsubscribe, Channel: "one-click", Link: "news"}
		if _, err := failing(events.RecipientUnsubscribed).Add(ctx, optOut, events.RecipientUnsubscribed); !errors.Is(err, errDiskFull) {
			t.Fatalf("Add with a failing event: %v", err)
		}
		if es, _ := s.Lookup(ctx, "acme", pat); len(es) != 0 {
			t.Errorf("the opt-out is there without its events: %+v", es)
		}
		if evs, _ := log.Events(ctx, "acme", 0, 10); len(evs) != 0 {
			t.Errorf("events of an opt-out that is not there: %+v", evs)
		}

		if _, err := s.Add(ctx, optOut, events.RecipientUnsubscribed); err != nil {
			t.Fatal(err)
		}
		if _, err := failing(events.RecipientResubscribed).Undo(ctx, "acme", pat, "news", "news", testNow, events.RecipientResubscribed); !errors.Is(err, errDiskFull) {
			t.Fatalf("Undo with a failing event: %v", err)
		}
		if es, _ := s.Lookup(ctx, "acme", pat); len(es) != 1 {
			t.Errorf("after a failed undo, entries %+v; want the opt-out", es)
		}
		if evs, _ := log.Events(ctx, "acme", 0, 10); len(evs) != 2 {
			t.Errorf("after a failed undo, %d events; want the opt-out's 2", len(evs))
		}

		bounced := &events.Event{Type: events.MessageBounced, Time: testNow, Data: events.Data{Tenant: "acme", Recipient: "gone@example.com"}}
		hard := Failure{Tenant: "acme", Address: "gone@example.com", Hard: true, SoftBounce: SoftBounce{Time: testNow, MessageID: "m1", Channel: "smtp"}}
		if _, err := failing(events.SuppressionAdded).Bounce(ctx, hard, bounced); !errors.Is(err, errDiskFull) {
			t.Fatalf("Bounce with a failing event: %v", err)
		}
		if es, _ := s.Lookup(ctx, "acme", "gone@example.com"); len(es) != 0 {
			t.Errorf("the bounce suppressed without its events: %+v", es)
		}
		if evs, _ := log.Events(ctx, "acme", 0, 10); len(evs) != 2 {
			t.Errorf("after a failed bounce, %d events; want 2 (its message.bounced went with it)", len(evs))
		}
	})
}
