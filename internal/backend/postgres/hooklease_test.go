package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/webhooks"
)

// hookReceiver is a real endpoint that keeps, in arrival order, the
// recipient of each event it got and which node sent it (User-Agent).
type hookReceiver struct {
	mu  sync.Mutex
	got []hookGot
}

type hookGot struct{ rcpt, node string }

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p struct {
		Data events.Data `json:"data"`
	}
	_ = json.Unmarshal(body, &p)
	h.mu.Lock()
	h.got = append(h.got, hookGot{p.Data.Recipient, r.Header.Get("User-Agent")})
	h.mu.Unlock()
}

func (h *hookReceiver) all() []hookGot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// hookNode is one node's dispatcher, with its leases.
type hookNode struct {
	leases *Leases
	cancel context.CancelFunc
	done   chan struct{}
}

func startHookNode(t *testing.T, n *node, name string, sealer *webhooks.Sealer) *hookNode {
	l := n.db.Leases()
	t.Cleanup(l.Close)
	d := webhooks.NewDispatcher(webhooks.Options{
		Store: Webhooks(n.b), Events: Events(n.b), Sealer: sealer, AllowPrivate: true,
		Concurrency: 1, UserAgent: name, Owner: l.Webhooks(), ClaimEvery: 100 * time.Millisecond,
	})
	l.OnLost(d.Changed)
	ctx, cancel := context.WithCancel(context.Background())
	h := &hookNode{leases: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		d.Run(ctx)
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *hookNode) stop() {
	h.cancel()
	<-h.done
}

// TestWebhookEndpointOneNode: two nodes dispatch from one database. Only
// one sends to the endpoint; the events go out in order, each once. Then
// that node dies mid-stream (its dispatcher stops, its server session
// ends): the other takes the endpoint over and goes on from the cursor
// its predecessor committed; every event arrives, in order, and at most
// the one in flight at the death arrives twice.
func TestWebhookEndpointOneNode(t *testing.T) {
	_, dsn := migrated(t)
	n1 := startNode(t, dsn, ClusterOptions{}, nil)
	n2 := startNode(t, dsn, ClusterOptions{}, nil)
	sealer, err := webhooks.NewSealer([]byte("server key for the webhook lease test"))
	must(t, err)
	rc := &hookReceiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	mgr := &webhooks.Manager{Store: Webhooks(n1.b), Events: Events(n1.b), Sealer: sealer, AllowPrivate: true}
	ctx := context.Background()
	_, _, err = mgr.Create(ctx, "acme", "ep1", webhooks.Input{URL: srv.URL})
	must(t, err)

	nodes := map[string]*hookNode{
		"node1": startHookNode(t, n1, "node1", sealer),
		"node2": startHookNode(t, n2, "node2", sealer),
	}
	emit := func(n *node, from, to int) {
		for i := from; i < to; i++ {
			ev := events.Event{Type: events.MessageDelivered, Time: time.Now(), Data: events.Data{Tenant: "acme", Recipient: fmt.Sprintf("r%03d@example.com", i)}}
			must(t, Events(n.b).Record(ctx, &ev))
		}
	}
	const total = 120
	emit(n1, 0, 40)
	eventually(t, 30*time.Second, "the first 20 events never arrived", func() bool { return len(rc.all()) >= 20 })
	sender := rc.all()[0].node
	for _, g := range rc.all() {
		if g.node != sender {
			t.Fatalf("both nodes sent to the endpoint: %v", rc.all())
		}
	}
	// The sender dies: its dispatcher stops (a request in flight is cut)
	// and its session ends.
	dead := nodes[sender]
	dead.stop()
	terminate(t, n1.db, dead.leases.backendPID())
	emit(n1, 40, 80)
	emit(n2, 80, total)
	eventually(t, 30*time.Second, "not every event arrived", func() bool {
		seen := map[string]bool{}
		for _, g := range rc.all() {
			seen[g.rcpt] = true
		}
		return len(seen) == total
	})

	// Each event in order, each once but at most the one in flight at the
	// death; after the death only the other node sends.
	got := rc.all()
	var order []string
	twice := 0
	for i, g := range got {
		if i > 0 && g.rcpt == got[i-1].rcpt {
			twice++
			continue
		}
		order = append(order, g.rcpt)
	}
	want := make([]string, total)
	for i := range want {
		want[i] = fmt.Sprintf("r%03d@example.com", i)
	}
	if !slices.Equal(order, want) {
		t.Errorf("events out of order or missing: %v", order)
	}
	if twice > 1 {
		t.Errorf("%d events sent twice, want at most the one in flight at the death", twice)
	}
	switched := false
	for _, g := range got {
		if g.node != sender {
			switched = true
		} else if switched {
			t.Errorf("the dead node sent after the takeover")
		}
	}
	t.Logf("%d requests for %d events; %d sent twice", len(got), total, twice)
}
