package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heedmail/heed/internal/events"
)

// DefaultSchedule is the wait before each retry of a failed delivery: eight
// attempts over about 27 hours and a half, so an endpoint down for a day
// still gets every event.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// DefaultProbes is the wait before each probe of a paused endpoint; the
// last one repeats.
var DefaultProbes = []time.Duration{
	5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute,
}

// Options configure a Dispatcher.
type Options struct {
	Store  Store
	Events events.Source
	Sealer *Sealer
	// Client sends the requests; nil builds one that checks every address
	// it connects to (DialContext over Resolver) unless AllowPrivate, and
	// follows no redirects.
	Client       *http.Client
	Resolver     Resolver
	AllowPrivate bool
	// Concurrency bounds the requests in flight (default 20).
	Concurrency int
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration
	// Schedule is the wait before each retry (default DefaultSchedule).
	Schedule []time.Duration
	// PauseAfter consecutive failures pause an endpoint (default 10).
	PauseAfter int
	// Probes is the wait before each probe of a paused endpoint (default
	// DefaultProbes).
	Probes    []time.Duration
	UserAgent string
	Now       func() time.Time
	Logger    *slog.Logger
	// Owner, when several nodes dispatch from one database, gives each
	// endpoint to one of them (nil: this dispatcher sends to every
	// endpoint). The dispatcher claims the endpoints it does not hold
	// every ClaimEvery (default 5 s) and drops an endpoint as soon as it
	// no longer holds it; the next holder goes on from the stored cursor.
	Owner      Owner
	ClaimEvery time.Duration
}

// Owner says which endpoints this node dispatches. Claim takes an
// endpoint if no other node holds it and reports whether this node holds
// it; Holds answers from memory, and may turn false at any time (the
// node lost the database); Release gives a deleted endpoint's claim back.
type Owner interface {
	Claim(ctx context.Context, tenant, id string) bool
	Holds(tenant, id string) bool
	Release(ctx context.Context, tenant, id string)
}

// maxResponse is the part of an answer read (and the start of it kept).
const (
	maxResponse  = 4 << 10
	keptResponse = 256
	// batch is the events read from the log at a time per endpoint.
	batch = 256
	// reloadEvery re-reads the endpoints even without a change notice
	// (another node's change, say).
	reloadEvery = 30 * time.Second
)

// Dispatcher sends events to endpoints: one loop that decides, a bounded
// pool of workers that send and record.
type Dispatcher struct {
	o    Options
	log  *slog.Logger
	wake chan struct{}
	jobs chan *job
	done chan *job

	changed chan struct{}

	dirtyMu sync.Mutex
	dirty   map[string]bool // tenants with new events since the last look

	mu  sync.Mutex // guards epState.read, buf, inflight and busy
	eps map[string]*epState

	inflight   int
	lastReload time.Time
}

type epState struct {
	ep   Endpoint
	keys []openKey
	// read is the last sequence number taken from the log; buf holds the
	// events taken and not yet sent.
	read    uint64
	buf     []events.Event
	drained bool
	// inflight holds the sequence numbers of log events being sent (they
	// hold the cursor back); busy every one being sent, retries too.
	inflight map[uint64]bool
	busy     map[uint64]bool

	failures int
	probes   int
	probeAt  time.Time
	probing  bool
}

type openKey struct {
	key     []byte
	expires time.Time
}

type job struct {
	st *epState
	// ep and keys are the endpoint as the attempt began (the loop may
	// reload st meanwhile).
	ep    Endpoint
	keys  []openKey
	ev    events.Event
	prior *Delivery // nil for a log event never attempted
	// stream marks an event taken from the log (not the schedule).
	stream bool
	probe  bool

	// Outcome, filled by the worker.
	ok, gone, cancelled bool
	err                 string
}

// NewDispatcher returns a dispatcher; Run starts it.
func NewDispatcher(o Options) *Dispatcher {
	if o.Concurrency <= 0 {
		o.Concurrency = 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	if o.PauseAfter <= 0 {
		o.PauseAfter = 10
	}
	if len(o.Probes) == 0 {
		o.Probes = DefaultProbes
	}
	if o.UserAgent == "" {
		o.UserAgent = "Heed-Webhooks/1"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ClaimEvery <= 0 {
		o.ClaimEvery = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = NewClient(o.Resolver, o.AllowPrivate, o.Timeout, o.Concurrency)
	}
	d := &Dispatcher{
		o: o, log: o.Logger,
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
		jobs:    make(chan *job),
		done:    make(chan *job, o.Concurrency),
		eps:     make(map[string]*epState),
		dirty:   make(map[string]bool),
	}
	o.Events.Watch(func(n events.Notice) { d.Notify(n.Tenant) })
	return d
}

// NewClient returns the HTTP client of webhook deliveries: every address
// it connects to is checked (unless allowPrivate), no proxy from the
// environment, no redirects followed, timeout per request.
func NewClient(r Resolver, allowPrivate bool, timeout time.Duration, conns int) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:            DialContext(r, allowPrivate, timeout),
			ForceAttemptHTTP2:      true,
			MaxIdleConns:           4 * conns,
			MaxIdleConnsPerHost:    conns,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Notify tells the dispatcher that tenant has new events in the log. It
// never blocks: the event log calls it as each commit lands
// (events.Source.Watch, which NewDispatcher sets up).
func (d *Dispatcher) Notify(tenant string) {
	d.dirtyMu.Lock()
	d.dirty[tenant] = true
	d.dirtyMu.Unlock()
	d.poke()
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Changed tells the dispatcher that endpoints were added, changed or
// removed.
func (d *Dispatcher) Changed() {
	select {
	case d.changed <- struct{}{}:
	default:
	}
	d.poke()
}

// Run dispatches until ctx ends; requests in flight are cancelled and
// their events sent again after the next start, with the same id.
func (d *Dispatcher) Run(ctx context.Context) error {
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for range d.o.Concurrency {
		wg.Go(func() {
			for j := range d.jobs {
				d.send(sendCtx, j)
				d.done <- j
			}
		})
	}
	defer func() {
		cancel()
		close(d.jobs)
		// Let the workers finish (their cancelled attempts are not recorded).
		for d.inflight > 0 {
			<-d.done
			d.inflight--
		}
		wg.Wait()
	}()
	d.reload(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := d.fill(ctx)
		wait := d.reloadEvery()
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(d.o.Now()), time.Millisecond))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-d.changed:
			d.reload(ctx)
		case <-d.wake:
			d.dirtyMu.Lock()
			dirty := d.dirty
			d.dirty = make(map[string]bool)
			d.dirtyMu.Unlock()
			for _, st := range d.eps {
				if dirty[st.ep.Tenant] {
					st.drained = false
				}
			}
		case j := <-d.done:
			d.inflight--
			d.finish(ctx, j)
		case <-timer.C:
		}
		if d.o.Now().Sub(d.lastReload) >= d.reloadEvery() {
			d.reload(ctx)
		}
	}
}

// reloadEvery is how often the endpoints are read again without a change
// notice: with an Owner, as often as the endpoints nobody holds are
// claimed.
func (d *Dispatcher) reloadEvery() time.Duration {
	if d.o.Owner != nil {
		return min(reloadEvery, d.o.ClaimEvery)
	}
	return reloadEvery
}

// owns reports whether this node dispatches the endpoint, claiming it
// when claim.
func (d *Dispatcher) owns(ctx context.Context, ep *Endpoint, claim bool) bool {
	switch {
	case d.o.Owner == nil:
		return true
	case claim:
		return d.o.Owner.Claim(ctx, ep.Tenant, ep.ID)
	}
	return d.o.Owner.Holds(ep.Tenant, ep.ID)
}

// stateKey is the key of an endpoint in Dispatcher.eps.
func stateKey(tenant, id string) string { return tenant + "\x00" + id }

// reload reads the endpoints, keeping the state of those it knows; on an
// error it logs and keeps the endpoints it had.
func (d *Dispatcher) reload(ctx context.Context) {
	d.lastReload = d.o.Now()
	eps, err := d.o.Store.Endpoints(ctx, "")
	if err != nil {
		d.log.Error("webhooks: reading endpoints", "err", err)
		return
	}
	seen := make(map[string]bool, len(eps))
	exists := make(map[string]bool, len(eps))
	for _, ep := range eps {
		k := stateKey(ep.Tenant, ep.ID)
		exists[k] = true
		if !d.owns(ctx, &ep, true) {
			continue // another node's: forget what this one knew of it
		}
		seen[k] = true
		keys, err := d.o.Sealer.openAll(&ep)
		if err != nil {
			d.log.Error("webhooks: endpoint secret unreadable; endpoint skipped", "tenant", ep.Tenant, "endpoint", ep.ID, "err", err)
			delete(seen, k)
			continue
		}
		st := d.eps[k]
		if st != nil && !st.ep.CreatedAt.Equal(ep.CreatedAt) {
			st = nil // deleted and made again: a new endpoint, from its own cursor
		}
		if st == nil {
			st = &epState{read: ep.Cursor, inflight: map[uint64]bool{}, busy: map[uint64]bool{}}
			d.eps[k] = st
		}
		if ep.State == Active && st.ep.State != Active {
			st.failures, st.probes = 0, 0 // enabled or resumed by the tenant: a fresh start
		}
		if ep.State == Paused && (st.ep.State != Paused || ep.URL != st.ep.URL) {
			st.probeAt = d.o.Now() // after a restart or a new URL: probe now
		}
		if !slices.Equal(ep.Types, st.ep.Types) {
			d.rewind(st) // a new filter applies to the events buffered
		}
		st.ep, st.keys = ep, keys
	}
	for k, st := range d.eps {
		if !seen[k] {
			delete(d.eps, k)
			if !exists[k] && d.o.Owner != nil {
				d.o.Owner.Release(ctx, st.ep.Tenant, st.ep.ID)
			}
		}
	}
}

// rewind gives the buffered events back to the log, to be read again.
func (d *Dispatcher) rewind(st *epState) {
	d.mu.Lock()
	if len(st.buf) > 0 {
		st.read = st.buf[0].Seq - 1
		st.buf = nil
	}
	d.mu.Unlock()
	st.drained = false
}

// fill hands out work while workers are free and returns when the
// schedule next needs a look.
func (d *Dispatcher) fill(ctx context.Context) (next time.Time) {
	now := d.o.Now()
	// Retries, resends and replays that are due: of this node's endpoints,
	// so none to look for while it has none.
	if free := d.o.Concurrency - d.inflight; free > 0 && len(d.eps) > 0 {
		jobs, n, err := d.o.Store.Due(ctx, now, free, func(j Job) bool {
			st := d.eps[stateKey(j.Tenant, j.Endpoint)]
			if st == nil || st.ep.State != Active || !d.owns(ctx, &st.ep, false) {
				return true
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			return st.busy[j.Seq]
		})
		if err != nil {
			d.log.Error("webhooks: reading the schedule", "err", err)
		}
		next = n
		for _, j := range jobs {
			d.startScheduled(ctx, d.eps[stateKey(j.Tenant, j.Endpoint)], j, false)
		}
	}
	// New events, one endpoint after another.
	for progress := true; progress && d.inflight < d.o.Concurrency; {
		progress = false
		for _, st := range d.eps {
			if d.inflight >= d.o.Concurrency {
				break
			}
			if st.ep.State != Active {
				continue
			}
			if !d.owns(ctx, &st.ep, false) {
				// Lost (the node lost the database): the next reload
				// forgets it; send nothing more meanwhile.
				d.Changed()
				continue
			}
			if ev, ok := d.nextEvent(ctx, st); ok {
				d.start(&job{st: st, ev: ev, stream: true})
				progress = true
			}
		}
	}
	// Probes of paused endpoints.
	for _, st := range d.eps {
		if st.ep.State != Paused || st.probing || !d.owns(ctx, &st.ep, false) {
			continue
		}
		if st.probeAt.After(now) {
			if next.IsZero() || st.probeAt.Before(next) {
				next = st.probeAt
			}
			continue
		}
		if d.inflight >= d.o.Concurrency {
			break
		}
		d.probe(ctx, st)
	}
	return next
}

// nextEvent takes the next log event the endpoint wants, reading the log
// when the buffer is empty.
func (d *Dispatcher) nextEvent(ctx context.Context, st *epState) (events.Event, bool) {
	if len(st.buf) == 0 && !st.drained {
		evs, err := d.o.Events.Events(ctx, st.ep.Tenant, st.read, batch)
		if err != nil {
			d.log.Error("webhooks: reading events", "tenant", st.ep.Tenant, "err", err)
			st.drained = true
			return events.Event{}, false
		}
		st.drained = len(evs) < batch
		var want []events.Event
		var seqs []uint64
		for _, ev := range evs {
			if st.ep.Wants(ev.Type) {
				want = append(want, ev)
				seqs = append(seqs, ev.Seq)
			}
		}
		// Events after the stored cursor may have been sent before a
		// restart (the cursor trails the deliveries in flight).
		done, err := d.o.Store.Handled(ctx, st.ep.Tenant, st.ep.ID, seqs)
		if err != nil {
			d.log.Error("webhooks: reading deliveries", "tenant", st.ep.Tenant, "err", err)
			st.drained = true
			return events.Event{}, false
		}
		d.mu.Lock()
		for _, ev := range want {
			if !done[ev.Seq] {
				st.buf = append(st.buf, ev)
			}
		}
		if len(evs) > 0 {
			st.read = evs[len(evs)-1].Seq
		}
		d.mu.Unlock()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(st.buf) == 0 {
		return events.Event{}, false
	}
	ev := st.buf[0]
	st.buf = st.buf[1:]
	if len(st.buf) == 0 {
		st.buf = nil
	}
	// In flight from now on, in the same critical section: the cursor
	// never passes it.
	st.busy[ev.Seq] = true
	st.inflight[ev.Seq] = true
	return ev, true
}

// startScheduled starts a job of the schedule.
func (d *Dispatcher) startScheduled(ctx context.Context, st *epState, j Job, probe bool) bool {
	ev, err := d.o.Events.Event(ctx, j.Tenant, j.Seq)
	prior, perr := d.o.Store.Delivery(ctx, j.Tenant, j.Endpoint, j.Seq)
	if perr != nil {
		d.log.Error("webhooks: reading a delivery", "tenant", j.Tenant, "endpoint", j.Endpoint, "seq", j.Seq, "err", perr)
		return false
	}
	if err != nil {
		// Purged from the log (retention) or unreadable: a dead letter.
		d.log.Warn("webhooks: a scheduled event is gone from the log", "tenant", j.Tenant, "seq", j.Seq, "err", err)
		r := Result{Tenant: j.Tenant, Endpoint: j.Endpoint, Status: Failed,
			Event:   events.Event{Seq: j.Seq, ID: prior.EventID, Type: prior.Type},
			Attempt: Attempt{At: d.o.Now().UTC(), Error: "the event is no longer in the event log"}}
		if err := d.o.Store.Record(ctx, r); err != nil {
			d.log.Error("webhooks: recording", "err", err)
		}
		return false
	}
	d.start(&job{st: st, ev: ev, prior: prior, probe: probe})
	return true
}

// probe sends one delivery to a paused endpoint: its next log event, or
// one it holds.
func (d *Dispatcher) probe(ctx context.Context, st *epState) {
	if ev, ok := d.nextEvent(ctx, st); ok {
		d.start(&job{st: st, ev: ev, stream: true, probe: true})
		st.probing = true
		return
	}
	held, err := d.o.Store.Held(ctx, st.ep.Tenant, st.ep.ID, 1)
	if err != nil {
		d.log.Error("webhooks: reading the schedule", "err", err)
		return
	}
	d.mu.Lock()
	if len(held) == 0 || st.busy[held[0].Seq] {
		d.mu.Unlock()
		return // nothing to send: the next event will probe
	}
	d.mu.Unlock()
	if d.startScheduled(ctx, st, held[0], true) {
		st.probing = true
	}
}

func (d *Dispatcher) start(j *job) {
	j.ep, j.keys = j.st.ep, j.st.keys
	if !j.stream { // nextEvent marked log events already
		d.mu.Lock()
		j.st.busy[j.ev.Seq] = true
		d.mu.Unlock()
	}
	d.inflight++
	d.jobs <- j
}

// payload is the body of a delivery (contract.md).
type payload struct {
	Type      events.Type `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      events.Data `json:"data"`
}

// send makes one attempt and records it (worker side).
func (d *Dispatcher) send(ctx context.Context, j *job) {
	st, ep := j.st, &j.ep
	body, err := json.Marshal(payload{Type: j.ev.Type, Timestamp: j.ev.Time.UTC(), Data: j.ev.Data})
	if err != nil {
		d.log.Error("webhooks: encoding an event", "tenant", ep.Tenant, "seq", j.ev.Seq, "err", err)
		j.cancelled = true
		d.release(j, abandoned)
		return
	}
	start := d.o.Now()
	a := Attempt{At: start.UTC(), Probe: j.probe}
	code, resp, err := d.post(ctx, j, start, body)
	a.DurationMS = d.o.Now().Sub(start).Milliseconds()
	a.StatusCode, a.Response = code, resp
	if err != nil {
		if ctx.Err() != nil {
			j.cancelled = true
			d.release(j, abandoned)
			return
		}
		a.Error = err.Error()
	} else if code < 200 || code > 299 {
		a.Error = "HTTP " + strconv.Itoa(code)
		if code >= 300 && code < 400 {
			a.Error += " (redirects are not followed)"
		}
	}
	j.ok = a.Error == ""
	j.gone = code == http.StatusGone
	j.err = a.Error

	r := Result{Tenant: ep.Tenant, Endpoint: ep.ID, Event: j.ev, Attempt: a}
	retries := 0
	if j.prior != nil {
		retries, r.Resends = j.prior.Retries, j.prior.Resends
	}
	switch {
	case j.ok:
		r.Status = Delivered
	case j.gone:
		r.Status = Failed
		r.Attempt.Error = "HTTP 410 Gone: the endpoint is disabled"
	case j.probe:
		// A failed probe costs the event nothing: it waits with the
		// endpoint.
		r.Status, r.NextAttempt = Retrying, Hold
	case retries >= len(d.o.Schedule):
		r.Status, r.CountRetry = Failed, true
	default:
		r.Status, r.CountRetry = Retrying, true
		r.NextAttempt = a.At.Add(jitter(d.o.Schedule[retries]))
	}
	d.mu.Lock()
	r.Cursor = st.cursor()
	d.mu.Unlock()
	outcome := recorded
	if err := d.o.Store.Record(context.WithoutCancel(ctx), r); err != nil {
		d.log.Error("webhooks: recording an attempt; it will be made again", "tenant", ep.Tenant, "endpoint", ep.ID, "seq", j.ev.Seq, "err", err)
		j.cancelled, outcome = true, again
	}
	d.release(j, outcome)
}

// What became of an attempt, for release.
const (
	recorded  = iota // its record committed
	abandoned        // cancelled by shutdown: sent again after the restart
	again            // its record failed: sent again now
)

// release marks j's event no longer in flight. A log event leaves the
// in-flight set only once its record committed, so the cursor never
// passes an event with no record: an abandoned one keeps holding the
// cursor until the restart, and one whose record failed goes back to the
// front of the buffer.
func (d *Dispatcher) release(j *job, outcome int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(j.st.busy, j.ev.Seq)
	if !j.stream || outcome == abandoned {
		return
	}
	delete(j.st.inflight, j.ev.Seq)
	if outcome == again {
		j.st.buf = append([]events.Event{j.ev}, j.st.buf...)
	}
}

// cursor is the last sequence number of the log all of whose events up to
// it are recorded or filtered out: below every event in flight or waiting
// in the buffer. d.mu held.
func (st *epState) cursor() uint64 {
	c := st.read
	if len(st.buf) > 0 {
		c = min(c, st.buf[0].Seq-1)
	}
	for s := range st.inflight {
		c = min(c, s-1)
	}
	return c
}

// post sends the request and returns the status and the start of the
// answer.
func (d *Dispatcher) post(ctx context.Context, j *job, ts time.Time, body []byte) (int, string, error) {
	id := j.ev.ID
	// Checked again at every attempt: an endpoint saved while
	// allow_private_targets was on must not send in clear once it is off.
	if _, err := CheckURL(j.ep.URL, d.o.AllowPrivate); err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	var keys [][]byte
	for _, k := range j.keys {
		if k.expires.IsZero() || ts.Before(k.expires) {
			keys = append(keys, k.key)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.o.UserAgent)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", SignatureHeader(keys, id, ts, body))
	resp, err := d.o.Client.Do(req)
	if err != nil {
		return 0, "", cleanErr(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	return resp.StatusCode, kept(b), nil
}

// hostOf is the host of an endpoint URL, for logs (a path or query may
// hold a token).
func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// cleanErr drops the method and URL that url.Error repeats.
func cleanErr(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// kept is the start of an answer, valid UTF-8.
func kept(b []byte) string {
	if len(b) > keptResponse {
		b = b[:keptResponse]
	}
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return string(b)
}

// jitter spreads a wait by ±20%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// finish updates the endpoint's health after an attempt (loop side).
func (d *Dispatcher) finish(ctx context.Context, j *job) {
	st := j.st
	if j.probe {
		st.probing = false
	}
	if j.cancelled || d.eps[stateKey(st.ep.Tenant, st.ep.ID)] != st {
		return
	}
	now := d.o.Now()
	switch {
	case j.ok:
		st.failures, st.probes = 0, 0
		if st.ep.State == Paused && d.setState(ctx, st, Paused, Active, "") {
			// What waited is due at once.
			if err := d.o.Store.Reschedule(ctx, st.ep.Tenant, st.ep.ID, now); err != nil {
				d.log.Error("webhooks: rescheduling", "err", err)
			}
			d.log.Info("webhooks: endpoint recovered", "tenant", st.ep.Tenant, "endpoint", st.ep.ID)
		}
	case j.gone:
		if !d.setState(ctx, st, st.ep.State, Disabled, fmt.Sprintf("answered 410 Gone at %s", now.UTC().Format(time.RFC3339))) {
			return
		}
		d.hold(ctx, st)
		d.log.Warn("webhooks: endpoint answered 410 Gone; disabled", "tenant", st.ep.Tenant, "endpoint", st.ep.ID, "host", hostOf(st.ep.URL))
	default:
		st.failures++
		if j.probe {
			st.probes++
			st.probeAt = now.Add(d.o.Probes[min(st.probes, len(d.o.Probes)-1)])
			return
		}
		if st.ep.State == Active && st.failures >= d.o.PauseAfter &&
			d.setState(ctx, st, Active, Paused, fmt.Sprintf("%d failures in a row, the last: %s", st.failures, j.err)) {
			st.probes, st.probeAt = 0, now.Add(d.o.Probes[0])
			d.hold(ctx, st)
			d.log.Warn("webhooks: endpoint keeps failing; paused, its events wait", "tenant", st.ep.Tenant, "endpoint", st.ep.ID, "err", j.err)
		}
	}
}

// hold moves an endpoint's scheduled deliveries to Hold and gives its
// buffered events back to the log.
func (d *Dispatcher) hold(ctx context.Context, st *epState) {
	if err := d.o.Store.Reschedule(ctx, st.ep.Tenant, st.ep.ID, Hold); err != nil {
		d.log.Error("webhooks: rescheduling", "err", err)
	}
	d.rewind(st)
}

// errStale is setState's: the stored endpoint is not in the state the
// loop believed (the tenant changed it meanwhile).
var errStale = errors.New("webhooks: endpoint changed meanwhile")

// setState moves the endpoint from state from to state to, unless it was
// changed meanwhile (then the tenant's change stands and the endpoints are
// read again); it reports whether it moved.
func (d *Dispatcher) setState(ctx context.Context, st *epState, from, to State, reason string) bool {
	_, err := d.o.Store.UpdateEndpoint(ctx, st.ep.Tenant, st.ep.ID, func(ep *Endpoint) error {
		if ep.State != from || !ep.CreatedAt.Equal(st.ep.CreatedAt) {
			return errStale
		}
		ep.State, ep.Reason, ep.UpdatedAt = to, reason, d.o.Now().UTC()
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, errStale) {
			d.log.Error("webhooks: saving the endpoint's state", "tenant", st.ep.Tenant, "endpoint", st.ep.ID, "err", err)
		}
		d.Changed()
		return false
	}
	st.ep.State, st.ep.Reason = to, reason
	return true
}
