package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	. "github.com/heedmail/heed/webhooks"
)

// TestDispatchNeverPassesALateCommit is issue 16's outbox trap seen by a
// tenant's endpoint: a transaction writes an event and is slow to commit
// while four others write theirs, with the dispatcher reading the log all
// along. The dispatcher must still deliver the slow event once it
// commits: its endpoint's cursor must not have moved past it. On
// PostgreSQL it holds because the event face assigns sequence numbers in
// commit order (docs/storage.md); without that, the four commit past the
// slow one, are delivered, and the slow one never is.
func TestDispatchNeverPassesALateCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *bed) {
		var mu sync.Mutex
		got := map[string]bool{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body struct {
				Data struct{ Recipient string } `json:"data"`
			}
			raw, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(raw, &body); err == nil {
				mu.Lock()
				got[body.Data.Recipient] = true
				mu.Unlock()
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		t.Cleanup(srv.Close)
		seen := func() map[string]bool {
			mu.Lock()
			defer mu.Unlock()
			out := map[string]bool{}
			for k := range got {
				out[k] = true
			}
			return out
		}
		sealer, err := NewSealer(sealTestKey)
		if err != nil {
			t.Fatal(err)
		}
		disp := NewDispatcher(Options{Store: b.store, Events: b.log, Sealer: sealer, AllowPrivate: true})
		mgr := &Manager{Store: b.store, Events: b.log, Sealer: sealer, AllowPrivate: true, Changed: disp.Changed}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); disp.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if _, _, err := mgr.Create(ctx, "acme", "main", Input{URL: srv.URL}); err != nil {
			t.Fatal(err)
		}
		b.emit(t, "acme", "first@example.com")
		waitFor(t, "the first event", func() bool { return seen()["first@example.com"] })

		appended, release := make(chan struct{}), make(chan struct{})
		slowDone := make(chan error, 1)
		go func() {
			once := sync.Once{}
			slowDone <- b.b.Update(ctx, func(tx backend.Tx) error {
				ev := events.Event{Type: events.MessageDelivered, Time: t0, Data: events.Data{Tenant: "acme", Recipient: "slow@example.com"}}
				if err := events.Append(tx.Events(), &ev); err != nil {
					return err
				}
				// A read sends a deferred insert (PostgreSQL): the
				// number is taken before the transaction dawdles.
				if _, _, err := tx.Events().Get(0); err != nil {
					return err
				}
				once.Do(func() { close(appended) })
				<-release
				return nil
			})
		}()
		<-appended
		const writers = 4
		var wg sync.WaitGroup
		var committed atomic.Int32
		errs := make(chan error, writers)
		for i := range writers {
			wg.Go(func() {
				ev := events.Event{Type: events.MessageDelivered, Time: t0, Data: events.Data{Tenant: "acme", Recipient: fmt.Sprintf("w%d@example.com", i)}}
				err := b.log.Record(ctx, &ev)
				committed.Add(1)
				errs <- err
			})
		}
		// Until the writers all wait for the slow transaction (bbolt) or
		// have committed above it and (without a horizon) been delivered
		// past it (PostgreSQL). Each commit wakes the dispatcher.
		waitFor(t, "the writers to wait or commit", func() bool {
			ok, err := b.waiting(writers)
			if err != nil {
				t.Fatal(err)
			}
			return ok || committed.Load() == writers
		})
		close(release)
		if err := <-slowDone; err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "every event", func() bool { return len(seen()) == 2+writers })
	})
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not synchronising
	}
}
