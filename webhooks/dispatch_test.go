package webhooks_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	. "github.com/heedmail/heed/webhooks"
	bolt "go.etcd.io/bbolt"
)

// received is one request the receiver got.
type received struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Status                   int
}

// receiver is a real HTTP endpoint that records every request and
// answers what answer says.
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	got    []received
	answer func(r received) int
	notify chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{notify: make(chan struct{}, 1), answer: func(received) int { return 200 }}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := received{ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
			Signature: r.Header.Get("webhook-signature"), Body: body}
		rc.mu.Lock()
		got.Status = rc.answer(got)
		rc.got = append(rc.got, got)
		rc.mu.Unlock()
		select {
		case rc.notify <- struct{}{}:
		default:
		}
		w.WriteHeader(got.Status)
		io.WriteString(w, "thanks")
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setAnswer(f func(received) int) {
	rc.mu.Lock()
	rc.answer = f
	rc.mu.Unlock()
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// delivered returns the requests answered 2xx.
func (rc *receiver) delivered() []received {
	var out []received
	for _, g := range rc.all() {
		if g.Status/100 == 2 {
			out = append(out, g)
		}
	}
	return out
}

// waitFor waits until cond holds, checking whenever the receiver got a
// request and at least every 20 ms (state changes in the database have no
// notice of their own).
func (rc *receiver) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-rc.notify:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

type rig struct {
	t      *testing.T
	db     *store.DB
	log    *events.Log
	store  *Service
	mgr    *Manager
	disp   *Dispatcher
	cancel context.CancelFunc
	done   chan struct{}
	now    atomic.Pointer[time.Time]
}

var sealTestKey = []byte("server key for the webhook tests.")

func newRig(t *testing.T, path string, o Options) *rig {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "heed.db")
	}
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := NewSealer(sealTestKey)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, db: db, log: boltdb.Events(db), store: boltdb.Webhooks(db)}
	o.Store, o.Events, o.Sealer, o.AllowPrivate = r.store, r.log, sealer, true
	if o.Schedule == nil {
		o.Schedule = []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond}
	}
	if o.Probes == nil {
		o.Probes = []time.Duration{5 * time.Millisecond, 10 * time.Millisecond}
	}
	if o.Now == nil {
		o.Now = r.clock
	}
	r.disp = NewDispatcher(o)
	r.mgr = &Manager{Store: r.store, Events: r.log, Sealer: sealer, AllowPrivate: true, Changed: r.disp.Changed, Now: o.Now}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.disp.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

// clock is real time unless a test moved it.
func (r *rig) clock() time.Time {
	if p := r.now.Load(); p != nil {
		return *p
	}
	return time.Now()
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
	r.db.Close()
}

// emit writes one event of tenant t as the relay would.
func (r *rig) emit(tenant string, typ events.Type, rcpt string) events.Event {
	r.t.Helper()
	ev := events.Event{Type: typ, Time: time.Now().UTC(), Data: events.Data{Tenant: tenant, MessageID: "msg1", Recipient: rcpt, List: "news"}}
	if err := r.log.Record(context.Background(), &ev); err != nil {
		r.t.Fatal(err)
	}
	evs, err := r.log.Events(context.Background(), tenant, 0, 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	return evs[len(evs)-1]
}

func (r *rig) endpoint(tenant, id, url string, types ...events.Type) string {
	r.t.Helper()
	_, secret, err := r.mgr.Create(context.Background(), tenant, id, Input{URL: url, Types: types})
	if err != nil {
		r.t.Fatal(err)
	}
	return secret
}

func (r *rig) state(tenant, id string) State {
	ep, err := r.store.Endpoint(context.Background(), tenant, id)
	if err != nil {
		r.t.Fatal(err)
	}
	return ep.State
}

// TestEveryEventTypeSigned: the receiver gets one request per event of
// every type, verifiable with the endpoint's secret, with the body of
// contract.md and the event's id as webhook-id.
func TestEveryEventTypeSigned(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	secret := r.endpoint("acme", "main", rc.srv.URL)
	r.endpoint("other", "main", rc.srv.URL+"/other")

	want := map[string]events.Event{}
	for i, typ := range events.AllTypes {
		ev := r.emit("acme", typ, "rcpt"+string(rune('a'+i))+"@example.com")
		want[ev.ID] = ev
	}
	rc.waitFor(t, "every event recorded", func() bool {
		ds, _, _ := r.store.Deliveries(context.Background(), "acme", "main", Delivered, "", 100)
		return len(ds) >= len(want)
	})
	got := rc.delivered()
	if len(got) != len(want) {
		t.Fatalf("receiver got %d requests, want %d", len(got), len(want))
	}
	for _, g := range got {
		ev, ok := want[g.ID]
		if !ok {
			t.Fatalf("webhook-id %q is no event of acme", g.ID)
		}
		delete(want, g.ID)
		h := http.Header{}
		h.Set("webhook-id", g.ID)
		h.Set("webhook-timestamp", g.Timestamp)
		h.Set("webhook-signature", g.Signature)
		if err := Verify(secret, h, g.Body, 5*time.Minute, time.Now()); err != nil {
			t.Errorf("event %s: signature: %v", ev.Type, err)
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(g.Body, &body); err != nil {
			t.Fatal(err)
		}
		if len(body) != 3 || body["type"] == nil || body["timestamp"] == nil || body["data"] == nil {
			t.Errorf("body %s: want exactly type, timestamp, data", g.Body)
		}
		var p struct {
			Type events.Type `json:"type"`
			Data events.Data `json:"data"`
		}
		json.Unmarshal(g.Body, &p)
		if p.Type != ev.Type || p.Data.Tenant != "acme" || p.Data.Recipient != ev.Data.Recipient || p.Data.MessageID != "msg1" {
			t.Errorf("body %s does not carry event %+v", g.Body, ev)
		}
	}
	// Each delivery is listed as delivered, with its attempt.
	ds, _, err := r.store.Deliveries(context.Background(), "acme", "main", "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(events.AllTypes) {
		t.Fatalf("%d deliveries listed, want %d", len(ds), len(events.AllTypes))
	}
	for _, d := range ds {
		if d.Status != Delivered || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 200 || d.Attempts[0].Response != "thanks" {
			t.Errorf("delivery %+v", d)
		}
	}
}

// TestTypeFilter: an endpoint with types gets those only.
func TestTypeFilter(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	r.endpoint("acme", "optouts", rc.srv.URL, events.RecipientUnsubscribed, events.RecipientComplained)
	r.emit("acme", events.MessageAccepted, "a@example.com")
	optout := r.emit("acme", events.RecipientUnsubscribed, "b@example.com")
	r.emit("acme", events.MessageDelivered, "c@example.com")
	last := r.emit("acme", events.RecipientComplained, "d@example.com")
	// Deliveries run in parallel, so the complaint may arrive before the
	// opt-out: wait for both, then stop the dispatcher so that any request
	// still in flight has been counted.
	rc.waitFor(t, "the opt-out and the complaint", func() bool {
		got := rc.delivered()
		return slices.ContainsFunc(got, func(g received) bool { return g.ID == optout.ID }) &&
			slices.ContainsFunc(got, func(g received) bool { return g.ID == last.ID })
	})
	r.stop()
	for _, g := range rc.all() {
		if !strings.Contains(string(g.Body), "recipient.") {
			t.Errorf("filtered endpoint got %s", g.Body)
		}
	}
	if n := len(rc.all()); n != 2 {
		t.Errorf("got %d requests, want 2", n)
	}
}

// TestOutageThenRecovery: the receiver is down for a while; the endpoint
// is paused, events wait, and once it is up every event arrives, each
// always under one id.
func TestOutageThenRecovery(t *testing.T) {
	rc := newReceiver(t)
	var down atomic.Bool
	down.Store(true)
	rc.setAnswer(func(received) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	// Retries a minute away: what recovers the events is the endpoint's
	// recovery, not the retry schedule.
	r := newRig(t, "", Options{PauseAfter: 5, Schedule: []time.Duration{time.Minute, time.Minute}})
	r.endpoint("acme", "main", rc.srv.URL)
	want := map[string]bool{}
	for i := range 50 {
		ev := r.emit("acme", events.MessageDelivered, "r"+string(rune('a'+i%26))+"@example.com")
		want[ev.ID] = true
	}
	rc.waitFor(t, "the endpoint to pause", func() bool { return r.state("acme", "main") == Paused })
	// More events while paused: they wait in the log.
	for range 20 {
		ev := r.emit("acme", events.MessageBounced, "late@example.com")
		want[ev.ID] = true
	}
	failedBefore := len(rc.all())
	down.Store(false)
	t.Cleanup(func() { // what the store holds, when the test failed
		if !t.Failed() {
			return
		}
		ep, _ := r.store.Endpoint(context.Background(), "acme", "main")
		t.Logf("endpoint %+v", ep.State)
		ds, _, _ := r.store.Deliveries(context.Background(), "acme", "main", "", "", 1000)
		n := map[Status]int{}
		for _, d := range ds {
			n[d.Status]++
			if d.Status != Delivered {
				t.Logf("%d %s next %v", d.Seq, d.Status, d.NextAttempt)
			}
		}
		t.Logf("rows %d %v", len(ds), n)
		jobs, next, _ := r.store.Due(context.Background(), time.Now(), 100, nil)
		t.Logf("due %d next %v", len(jobs), next)
	})
	rc.waitFor(t, "every event", func() bool {
		seen := map[string]bool{}
		for _, g := range rc.delivered() {
			seen[g.ID] = true
		}
		return len(seen) == len(want)
	})
	if r.state("acme", "main") != Active {
		t.Errorf("endpoint state %s after recovery, want active", r.state("acme", "main"))
	}
	bodies := map[string]string{}
	for _, g := range rc.all() {
		if !want[g.ID] {
			t.Fatalf("unknown webhook-id %q", g.ID)
		}
		if b, ok := bodies[g.ID]; ok && b != string(g.Body) {
			t.Fatalf("webhook-id %s carried two different bodies", g.ID)
		}
		bodies[g.ID] = string(g.Body)
	}
	t.Logf("%d events, %d failed requests during the outage, %d requests in all", len(want), failedBefore, len(rc.all()))
}

// TestGoneDisables: 410 disables the endpoint; its later events wait and
// go out once the tenant enables it again, never while it is disabled.
func TestGoneDisables(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	var gone atomic.Bool
	gone.Store(true)
	rc.setAnswer(func(received) int {
		if gone.Load() {
			return http.StatusGone
		}
		if st := r.state("acme", "main"); st != Active {
			t.Errorf("a request arrived while the endpoint was %s", st)
		}
		return 200
	})
	r.endpoint("acme", "main", rc.srv.URL)
	first := r.emit("acme", events.MessageDelivered, "a@example.com")
	rc.waitFor(t, "the endpoint to be disabled", func() bool { return r.state("acme", "main") == Disabled })
	d, err := r.store.Delivery(context.Background(), "acme", "main", first.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != Failed || d.Attempts[0].StatusCode != 410 {
		t.Errorf("the 410 delivery: %+v", d)
	}
	ep, _ := r.store.Endpoint(context.Background(), "acme", "main")
	if !strings.Contains(ep.Reason, "410") {
		t.Errorf("reason %q does not name the 410", ep.Reason)
	}
	waiting := r.emit("acme", events.RecipientUnsubscribed, "b@example.com")
	gone.Store(false)
	active := Active
	if _, err := r.mgr.Update(context.Background(), "acme", "main", Patch{State: &active}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the waiting event", func() bool {
		return slices.ContainsFunc(rc.delivered(), func(g received) bool { return g.ID == waiting.ID })
	})
}

// TestRotationSignsTwice: after a rotation both secrets verify, until the
// old one expires.
func TestRotationSignsTwice(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	oldSecret := r.endpoint("acme", "main", rc.srv.URL)
	_, newSecret, err := r.mgr.Rotate(context.Background(), "acme", "main", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ev := r.emit("acme", events.MessageDelivered, "a@example.com")
	rc.waitFor(t, "the event", func() bool { return len(rc.delivered()) == 1 })
	g := rc.delivered()[0]
	if g.ID != ev.ID || len(strings.Fields(g.Signature)) != 2 {
		t.Fatalf("signature header %q, want two signatures", g.Signature)
	}
	h := http.Header{}
	h.Set("webhook-id", g.ID)
	h.Set("webhook-timestamp", g.Timestamp)
	h.Set("webhook-signature", g.Signature)
	for name, s := range map[string]string{"old": oldSecret, "new": newSecret} {
		if err := Verify(s, h, g.Body, time.Minute, time.Now()); err != nil {
			t.Errorf("%s secret: %v", name, err)
		}
	}
	// An hour and a bit later the old secret no longer signs.
	later := time.Now().Add(61 * time.Minute)
	r.now.Store(&later)
	r.emit("acme", events.MessageBounced, "b@example.com")
	rc.waitFor(t, "the second event", func() bool { return len(rc.delivered()) == 2 })
	g = rc.delivered()[1]
	if n := len(strings.Fields(g.Signature)); n != 1 {
		t.Errorf("after the grace: %d signatures, want 1", n)
	}
	h.Set("webhook-id", g.ID)
	h.Set("webhook-timestamp", g.Timestamp)
	h.Set("webhook-signature", g.Signature)
	if err := Verify(newSecret, h, g.Body, time.Minute, later); err != nil {
		t.Errorf("new secret after the grace: %v", err)
	}
	if err := Verify(oldSecret, h, g.Body, time.Minute, later); err == nil {
		t.Errorf("the old secret still verifies after its grace")
	}
}

// TestDeadLetter: an event the endpoint keeps refusing becomes a dead
// letter after the last retry; the others are delivered and the endpoint
// stays active.
func TestDeadLetter(t *testing.T) {
	rc := newReceiver(t)
	rc.setAnswer(func(g received) int {
		if strings.Contains(string(g.Body), "poison@") {
			return 500
		}
		return 200
	})
	r := newRig(t, "", Options{})
	r.endpoint("acme", "main", rc.srv.URL)
	poison := r.emit("acme", events.MessageBounced, "poison@example.com")
	for range 5 {
		r.emit("acme", events.MessageDelivered, "fine@example.com")
	}
	rc.waitFor(t, "the dead letter and the others", func() bool {
		dl, _, _ := r.store.DeadLetters(context.Background(), "acme", "", 10)
		return len(dl) == 1 && len(rc.delivered()) == 5
	})
	dl, _, _ := r.store.DeadLetters(context.Background(), "", "", 10)
	if len(dl) != 1 || dl[0].Seq != poison.Seq || dl[0].Status != Failed || dl[0].Retries != 4 || len(dl[0].Attempts) != 4 {
		t.Fatalf("dead letters %+v", dl)
	}
	if n := len(rc.delivered()); n != 5 {
		t.Errorf("%d delivered, want 5", n)
	}
	if st := r.state("acme", "main"); st != Active {
		t.Errorf("endpoint %s", st)
	}
	// Resending it, now that the receiver takes it, delivers it.
	rc.setAnswer(func(received) int { return 200 })
	if _, err := r.mgr.Resend(context.Background(), "acme", "main", poison.ID); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the resent event", func() bool { return len(rc.delivered()) == 6 })
	if g := rc.delivered()[5]; g.ID != poison.ID {
		t.Errorf("resend carried id %s, want %s", g.ID, poison.ID)
	}
	if dl, _, _ := r.store.DeadLetters(context.Background(), "acme", "", 10); len(dl) != 0 {
		t.Errorf("still a dead letter after a successful resend: %+v", dl)
	}
}

// TestPurgeTakesDeadLetterMarks: purging a finished delivery that became a
// dead letter deletes its dead-letter mark too.
func TestPurgeTakesDeadLetterMarks(t *testing.T) {
	rc := newReceiver(t)
	rc.setAnswer(func(received) int { return 500 })
	r := newRig(t, "", Options{})
	r.endpoint("acme", "main", rc.srv.URL)
	r.emit("acme", events.MessageBounced, "poison@example.com")
	rc.waitFor(t, "the dead letter", func() bool {
		dl, _, _ := r.store.DeadLetters(context.Background(), "acme", "", 10)
		return len(dl) == 1
	})
	if n, err := r.store.Purge(context.Background(), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want the one dead letter", n, err)
	}
	r.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{store.BucketWebhookDeliveries, store.BucketWebhookDead} {
			if n := tx.Bucket(b).Stats().KeyN; n != 0 {
				t.Errorf("%s holds %d keys after the purge", b, n)
			}
		}
		return nil
	})
}

// TestReplay: a replay sends again every event of a time range.
func TestReplay(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	r.emit("acme", events.MessageAccepted, "before@example.com") // before the endpoint
	r.endpoint("acme", "main", rc.srv.URL)
	for range 3 {
		r.emit("acme", events.MessageDelivered, "x@example.com")
	}
	rc.waitFor(t, "three events", func() bool { return len(rc.delivered()) == 3 })
	n, err := r.mgr.Replay(context.Background(), "acme", "main", time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("replay scheduled %d, want 4 (the event from before the endpoint too)", n)
	}
	rc.waitFor(t, "the replay", func() bool { return len(rc.delivered()) == 7 })
	if _, err := r.mgr.Replay(context.Background(), "acme", "main", time.Now(), time.Now().Add(-time.Minute)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an empty range: %v", err)
	}
}

// TestRestartResumes: events pending when the dispatcher stops (failing
// attempts scheduled again, attempts cut short, events not yet taken) go
// out after a restart on the same database, by themselves, with the ids
// of their first attempts.
func TestRestartResumes(t *testing.T) {
	rc := newReceiver(t)
	rc.setAnswer(func(received) int { return 500 })
	path := filepath.Join(t.TempDir(), "heed.db")
	r := newRig(t, path, Options{Schedule: []time.Duration{300 * time.Millisecond}, PauseAfter: 1000})
	r.endpoint("acme", "main", rc.srv.URL)
	want := map[string]bool{}
	for range 10 {
		want[r.emit("acme", events.MessageDelivered, "a@example.com").ID] = true
	}
	rc.waitFor(t, "a first attempt of each", func() bool { return len(rc.all()) >= 10 })
	r.stop()
	for _, g := range rc.all() {
		if !want[g.ID] {
			t.Fatalf("unknown id %s", g.ID)
		}
	}
	rc.setAnswer(func(received) int { return 200 })
	r2 := newRig(t, path, Options{Schedule: []time.Duration{300 * time.Millisecond}})
	t.Cleanup(func() {
		if t.Failed() {
			ds, _, _ := r2.store.Deliveries(context.Background(), "acme", "main", "", "", 100)
			for _, d := range ds {
				t.Logf("%d %s %v resends %d attempts %d", d.Seq, d.Status, d.NextAttempt, d.Resends, len(d.Attempts))
			}
			t.Logf("requests %d", len(rc.all()))
		}
	})
	// Each at least once, with no one asking: the schedule survived the
	// stop.
	rc.waitFor(t, "every event", func() bool {
		ids := map[string]bool{}
		for _, g := range rc.delivered() {
			ids[g.ID] = true
		}
		return len(ids) == 10
	})
	for _, g := range rc.delivered() {
		if !want[g.ID] {
			t.Errorf("after the restart: id %s is new", g.ID)
		}
	}
}

// TestBlockedAddressAttempt: with private targets not allowed, an endpoint
// whose name resolves to a private address is never connected to; the
// attempt says why.
func TestBlockedAddressAttempt(t *testing.T) {
	rc := newReceiver(t)
	port := rc.srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	res := staticResolver{"hooks.example": {netip.MustParseAddr("127.0.0.1")}}
	r := newRig(t, "", Options{Client: NewClient(res, false, time.Second, 2)})
	r.mgr.AllowPrivate = false
	if _, _, err := r.mgr.Create(context.Background(), "acme", "x", Input{URL: "http://hooks.example/"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("plain http without allow_private_targets: %v", err)
	}
	if _, _, err := r.mgr.Create(context.Background(), "acme", "y", Input{URL: "https://127.0.0.1/"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a loopback URL: %v", err)
	}
	// The name passes at configuration time; the dial refuses what it
	// resolves to.
	r.mgr.AllowPrivate = true // plain http to reach the test port
	r.endpoint("acme", "main", "http://hooks.example:"+strconv.Itoa(int(port))+"/")
	ev := r.emit("acme", events.MessageDelivered, "a@example.com")
	rc.waitFor(t, "the refused attempt", func() bool {
		d, err := r.store.Delivery(context.Background(), "acme", "main", ev.Seq)
		return err == nil && len(d.Attempts) > 0
	})
	d, _ := r.store.Delivery(context.Background(), "acme", "main", ev.Seq)
	if !strings.Contains(d.Attempts[0].Error, "not allowed") {
		t.Errorf("attempt error %q", d.Attempts[0].Error)
	}
	if n := len(rc.all()); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

// TestResendWhileDisabled: an event resent while the endpoint is disabled
// goes out once when it is enabled again, and is then delivered (not sent
// over and over).
func TestResendWhileDisabled(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	r.endpoint("acme", "main", rc.srv.URL)
	ev := r.emit("acme", events.MessageDelivered, "a@example.com")
	rc.waitFor(t, "the event", func() bool { return len(rc.delivered()) == 1 })
	disabled, active := Disabled, Active
	ctx := context.Background()
	if _, err := r.mgr.Update(ctx, "acme", "main", Patch{State: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.mgr.Resend(ctx, "acme", "main", ev.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.mgr.Update(ctx, "acme", "main", Patch{State: &active}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the resend delivered", func() bool {
		d, err := r.store.Delivery(ctx, "acme", "main", ev.Seq)
		return err == nil && d.Status == Delivered && len(d.Attempts) == 2
	})
	// A marker event after it: once it arrived, a looping resend would
	// have shown.
	marker := r.emit("acme", events.MessageBounced, "b@example.com")
	rc.waitFor(t, "the marker", func() bool {
		return slices.ContainsFunc(rc.delivered(), func(g received) bool { return g.ID == marker.ID })
	})
	if n := len(rc.all()); n != 3 {
		t.Errorf("%d requests, want 3 (the event, its resend, the marker)", n)
	}
	d, _ := r.store.Delivery(ctx, "acme", "main", ev.Seq)
	if d.UpdatedAt.After(time.Now()) {
		t.Errorf("updated_at %v is in the future", d.UpdatedAt)
	}
}

// TestEndpointLimits: at most MaxEndpoints per tenant, even when created
// at once; the contract's PUT still changes the default endpoint at the
// limit; rotation keeps at most MaxOldSecrets old secrets.
func TestEndpointLimits(t *testing.T) {
	r := newRig(t, "", Options{})
	ctx := context.Background()
	if _, _, _, err := r.mgr.Put(ctx, "acme", DefaultEndpoint, Input{URL: "https://a.example/"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 * MaxEndpoints {
		wg.Go(func() { r.mgr.Create(ctx, "acme", "", Input{URL: "https://b.example/"}) })
	}
	wg.Wait()
	eps, _ := r.store.Endpoints(ctx, "acme")
	if len(eps) != MaxEndpoints {
		t.Errorf("%d endpoints, want %d", len(eps), MaxEndpoints)
	}
	ep, secret, created, err := r.mgr.Put(ctx, "acme", DefaultEndpoint, Input{URL: "https://c.example/"})
	if err != nil || created || secret != "" || ep.URL != "https://c.example/" {
		t.Errorf("PUT at the limit: %v %v %q %v", ep, created, secret, err)
	}
	for range 10 {
		if _, _, err := r.mgr.Rotate(ctx, "acme", DefaultEndpoint, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	ep, _ = r.store.Endpoint(ctx, "acme", DefaultEndpoint)
	if len(ep.Secrets) != 1+MaxOldSecrets {
		t.Errorf("%d secrets after 10 rotations, want %d", len(ep.Secrets), 1+MaxOldSecrets)
	}
}

// TestFindByID: an event is found by its id among other tenants' events
// of the same moments, and another tenant's id is not found.
func TestFindByID(t *testing.T) {
	rc := newReceiver(t)
	r := newRig(t, "", Options{})
	r.endpoint("acme", "main", rc.srv.URL)
	var evs []events.Event
	for i := range 30 {
		tenant := "acme"
		if i%3 == 0 {
			tenant = "other"
		}
		evs = append(evs, r.emit(tenant, events.MessageAccepted, "x@example.com"))
	}
	ctx := context.Background()
	for _, ev := range evs {
		got, err := r.mgr.FindEvent(ctx, "acme", ev.ID)
		if ev.Data.Tenant == "other" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("another tenant's event: %v %v", got.ID, err)
			}
			continue
		}
		if err != nil || got.Seq != ev.Seq {
			t.Errorf("event %s: %v, %v", ev.ID, got.Seq, err)
		}
	}
	if _, err := r.mgr.FindEvent(ctx, "acme", "evt_nonsense"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a malformed id: %v", err)
	}
}

// staticResolver answers from a map (ssrf_test.go's mapResolver is in
// the package's internal tests).
type staticResolver map[string][]netip.Addr

func (r staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if addrs, ok := r[host]; ok {
		return addrs, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
