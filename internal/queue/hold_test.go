package queue_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	. "github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/txn"
)

// TestHeldThenReleased: a message of a paused tenant is not sent while
// it is held (its recipient is put off by HoldFor, with no attempt and
// no event), and goes to the sink once the tenant is released; the
// outcome then counts in the tenant's rates.
func TestHeldThenReleased(t *testing.T) {
	e := newEnv(t, nil)
	e.q.Stop(context.Background()) // started again below, with Held
	var held atomic.Bool
	held.Store(true)
	e.opts.Held = func(m *Message) bool { return held.Load() && m.Tenant == "acme" }
	e.store.KeepRates(nil)
	e.q = New(e.opts)
	e.q.Start()

	m := e.submit("pat@example.net")
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := e.store.Message(context.Background(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := got.Recipients[0]; r.State == Queued && r.NextAttempt.After(time.Now().Add(HoldFor/2)) {
			break // held: put off by an hour
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recipient was not held: %+v", got.Recipients[0])
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("the sink received %d messages of a held tenant", n)
	}
	if ty := typeStrings(e.eventTypes()); len(ty) != 1 || ty[0] != "message.accepted" {
		t.Errorf("events while held: %v", ty)
	}

	held.Store(false)
	n, err := e.store.Release(context.Background(), "acme", time.Now())
	if err != nil || n != 1 {
		t.Fatalf("release: %d, %v", n, err)
	}
	e.q.Kick()
	e.sink.Wait(t, 1, 10*time.Second)
	e.waitState(m.ID, 0, Delivered)

	rep, err := reputation.NewRates(boltdbReputation(e), nil).Report(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if w := rep.Windows[0]; w.Final != 1 || w.Delivered != 1 || len(rep.Domains) != 1 || rep.Domains[0].Domain != "acme.test" {
		t.Errorf("rates after the delivery: %+v", rep)
	}
}

func boltdbReputation(e *env) txnRunner { return boltdb.Reputation(e.db) }

type txnRunner = txn.Runner[reputation.Tx]
