package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
)

// hookMessages is how many messages TestWebhooksSurviveANodeKill
// submits; each makes two events (accepted, delivered).
const hookMessages = 300

// takeoverWithin is how soon the issue wants another node to take a dead
// node's endpoint.
const takeoverWithin = 30 * time.Second

// TestWebhooksSurviveANodeKill: the tenant's webhook endpoint (a
// receiver on loopback) is first held by the first node, the only one
// running; then three nodes take mail while the first is killed with
// SIGKILL mid-stream and later restarted. Another node takes the
// endpoint over within 30 s; every event of the log arrives, in the
// log's order; an event arrives twice only if the killed node had sent
// it and not recorded it, at most webhooks.concurrency (1 here, so that
// one node sends in order) requests in flight at the kill.
func TestWebhooksSurviveANodeKill(t *testing.T) {
	rx := &hookLog{}
	srv := httptest.NewServer(rx)
	defer srv.Close()
	c := startCluster(t, options{nodes: 3, later: 2,
		config: "webhooks: { allow_private_targets: true, concurrency: 1 }\n"})
	first := c.nodes[0]
	before := lastSeq(t, first)
	first.api("PUT", "/api/v1/tenants/acme/webhook", map[string]string{"url": srv.URL}, nil)

	// The endpoint is the first node's: it is the only node running when
	// the first event goes out.
	s := &submitter{c: c}
	if err := s.send("h-0", ""); err != nil {
		t.Fatal(err)
	}
	s.close()
	waitFor(t, "the first event at the receiver", time.Minute, func() bool { return rx.count() > 0 })
	holder := c.endpointHolder()
	if holder == "" {
		t.Fatal("no session holds the endpoint's lease while events go out")
	}
	for _, n := range c.nodes[1:] {
		n.start()
		n.waitReady()
	}

	var acked ackLog
	acked.add("h-0")
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			s := &submitter{c: c, next: g}
			defer s.close()
			for {
				i := next.Add(1)
				if i > hookMessages {
					return
				}
				for try := 0; ; try++ {
					id := fmt.Sprintf("h-%d-%d", i, try)
					if err := s.send(id, ""); err == nil {
						acked.add(id)
						break
					} else if try > 100 {
						t.Errorf("message h-%d refused 100 times, last: %v", i, err)
						return
					}
				}
			}
		})
	}
	waitFor(t, "a third of the events at the receiver", time.Minute, func() bool { return rx.count() >= 2*hookMessages/3 })
	first.kill()
	killed := time.Now()
	atKill := rx.count()
	waitFor(t, "another node to send to the endpoint", takeoverWithin, func() bool { return rx.count() > atKill })
	takeover := time.Since(killed)
	if h := c.endpointHolder(); h == "" || h == holder {
		t.Errorf("after the kill the endpoint's lease is held by session %q, before by %q", h, holder)
	}
	first.start()
	first.waitReady()
	wg.Wait()
	c.waitDelivered(&acked, 2*time.Minute)

	// Every event of the log since the endpoint was made arrives.
	var want []string
	seqOf := map[string]uint64{}
	waitFor(t, "every event of the log at the receiver", time.Minute, func() bool {
		want = eventsAfter(t, c.nodes[1], before)
		for _, id := range want {
			if !rx.has(id) {
				return false
			}
		}
		return true
	})
	for i, id := range want {
		seqOf[id] = uint64(i)
	}
	got := rx.all()
	dups, last := 0, -1
	for pos, id := range got {
		i, ok := seqOf[id]
		if !ok {
			t.Errorf("arrival %d: webhook-id %s is no event of the log", pos, id)
			continue
		}
		if first := rx.firstAt(id); first != pos {
			dups++
			if first >= atKill {
				t.Errorf("event %s arrived twice, first after the kill (arrivals %d and %d)", id, first, pos)
			}
			continue
		}
		if int(i) < last {
			t.Errorf("arrival %d: event %d of the log after event %d", pos, i, last)
		}
		last = int(i)
	}
	if dups > 1 {
		t.Errorf("%d events arrived twice; at most the one request in flight at the kill may", dups)
	}
	t.Logf("%d events, %d arrivals (%d before the kill), %d twice; another node took the endpoint %v after the kill",
		len(want), len(got), atKill, dups, takeover.Round(time.Millisecond))
}

// hookLog is a webhook endpoint recording the webhook-id of each request
// in arrival order.
type hookLog struct {
	mu    sync.Mutex
	ids   []string
	first map[string]int
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := r.Header.Get("webhook-id")
	if h.first == nil {
		h.first = map[string]int{}
	}
	if _, ok := h.first[id]; !ok {
		h.first[id] = len(h.ids)
	}
	h.ids = append(h.ids, id)
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookLog) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}

func (h *hookLog) has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.first[id]
	return ok
}

// firstAt is the arrival position of id's first copy.
func (h *hookLog) firstAt(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first[id]
}

func (h *hookLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

// lastSeq is the sequence number of acme's newest event (0: none).
func lastSeq(t *testing.T, n *node) uint64 {
	t.Helper()
	var seq uint64
	for {
		var page struct {
			Events []struct{ Seq uint64 }
			Next   string
		}
		n.api("GET", "/api/v1/tenants/acme/events?limit=1000&after="+strconv.FormatUint(seq, 10), nil, &page)
		if len(page.Events) == 0 {
			return seq
		}
		seq = page.Events[len(page.Events)-1].Seq
	}
}

// eventsAfter is the ids of acme's events after seq, in the log's order.
func eventsAfter(t *testing.T, n *node, seq uint64) []string {
	t.Helper()
	var ids []string
	for {
		var page struct {
			Events []struct {
				ID  string
				Seq uint64
			}
		}
		n.api("GET", "/api/v1/tenants/acme/events?limit=1000&after="+strconv.FormatUint(seq, 10), nil, &page)
		if len(page.Events) == 0 {
			return ids
		}
		for _, ev := range page.Events {
			ids = append(ids, ev.ID)
		}
		seq = page.Events[len(page.Events)-1].Seq
	}
}

// endpointHolder is the server process id (as text) of the session that
// holds the lease of acme's default webhook endpoint, "" if none: the
// lease is a session-level advisory lock, bigint form, keyed by a hash
// of its name (docs/postgresql.md, "One node per webhook endpoint").
func (c *cluster) endpointHolder() string {
	c.t.Helper()
	h := sha256.Sum256([]byte("heed.lease webhook endpoint acme\x00default"))
	key := int64(binary.BigEndian.Uint64(h[:8]))
	pids := pgtest.Strings(c.t, c.dsn, `SELECT pid::text FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND ((classid::bigint << 32) | objid::bigint) = $1`, key)
	if len(pids) == 0 {
		return ""
	}
	return pids[0]
}
