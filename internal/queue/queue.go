package queue

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/report"
	"github.com/heedmail/heed/suppression"
)

// Transport sends one rendered copy to one recipient. internal/outbound
// implements it; it must be safe for concurrent use, and honour ctx. msg
// is only valid until Deliver returns (the queue renders into a pooled
// buffer): a Transport that keeps it must copy it.
type Transport interface {
	Deliver(ctx context.Context, env outbound.Envelope, msg []byte) outbound.Result
}

// Options configure a Queue.
type Options struct {
	Store     Store
	Spool     *Spool
	Transport Transport
	VERP      VERP
	Hostname  string
	// Tenants, Suppressions and Unsubscribe give each copy its list
	// treatment, suppression check and signature; with Tenants nil the
	// queue relays messages as submitted (tests of the queue alone).
	Tenants      Tenants
	Suppressions suppression.Store
	Unsubscribe  Unsubscribe
	// Workers is the number of concurrent attempts (0 = automatic).
	Workers int
	// DomainConcurrency caps concurrent transactions per recipient domain.
	DomainConcurrency int
	// MaxLifetime is how long a message is retried before it bounces.
	MaxLifetime time.Duration
	Now         func() time.Time
	Backoff     func(attempts int) time.Duration
	// Observe, when set, hears each recorded outcome with the time since
	// the message was accepted (metrics).
	Observe func(state State, sinceAccepted time.Duration)
	// Held, when set, says a message's recipients wait instead of being
	// attempted (a tenant paused by the reputation guard): they are put
	// off by HoldFor (Store.Hold) until a resume releases them.
	Held   func(msg *Message) bool
	Logger *slog.Logger
}

// Queue accepts messages and runs their delivery.
//
// Lifecycle: New, then Start once; Enqueue from any goroutine; Stop once,
// which returns when no attempt is running. The Store must stay open until
// Stop has returned.
type Queue struct {
	o    Options
	log  *slog.Logger
	kick chan struct{}
	jobs chan Job

	// sigs shares one DKIM signature between identical copies.
	sigs *dkim.Reuse

	mu       sync.Mutex
	inflight map[jobKey]Job // jobs handed to a worker
	active   map[string]int // transactions in progress per domain

	stop    chan struct{}
	stopped chan struct{}
	// idle is closed by Stop once no attempt runs: the lease renewer
	// (renew.go) keeps renewing until then.
	idle    chan struct{}
	workCtx context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New returns a queue; call Start to run deliveries.
func New(o Options) *Queue {
	if o.Workers <= 0 {
		o.Workers = max(64, 16*runtime.NumCPU())
	}
	if o.DomainConcurrency <= 0 {
		o.DomainConcurrency = 20
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 120 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Backoff == nil {
		o.Backoff = Backoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{
		o: o, log: o.Logger,
		sigs:     dkim.NewReuse(o.Now),
		kick:     make(chan struct{}, 1),
		jobs:     make(chan Job, o.Workers),
		inflight: make(map[jobKey]Job),
		active:   make(map[string]int),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		idle:     make(chan struct{}),
		workCtx:  ctx, cancel: cancel,
	}
}

// Enqueue records msg, whose body is already durable in the spool, and
// returns once it is on disk. From then on the message is never lost.
func (q *Queue) Enqueue(ctx context.Context, msg *Message) error {
	if err := q.o.Store.Add(ctx, msg); err != nil {
		return err
	}
	q.Kick()
	return nil
}

// Kick wakes the scheduler.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Start runs the scheduler and the workers.
func (q *Queue) Start() {
	for range q.o.Workers {
		q.wg.Add(1)
		go q.worker()
	}
	go q.schedule()
	if l, ok := q.o.Store.(leaser); ok && l.LeaseTime() > 0 {
		go q.renew(l)
	}
}

// Stop stops handing out work and waits for attempts in progress; when ctx
// ends first they are cancelled and left due, to be made again after a
// restart.
func (q *Queue) Stop(ctx context.Context) error {
	close(q.stop)
	<-q.stopped
	close(q.jobs)
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done); close(q.idle) }()
	select {
	case <-done:
		q.cancel()
		return nil
	case <-ctx.Done():
		q.cancel()
		<-done
		return ctx.Err()
	}
}

// jobKey identifies a job in the in-flight set; a struct, so the
// scheduler's scan allocates nothing per entry it skips.
type jobKey struct {
	id  string
	idx int
}

func keyOf(j Job) jobKey { return jobKey{j.MessageID, j.Index} }

// schedule is the one scheduler loop: it hands due jobs to free workers
// and sleeps until the next job is due or something changes.
func (q *Queue) schedule() {
	defer close(q.stopped)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-q.kick:
		case <-timer.C:
		}
		wait := q.dispatch()
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(wait)
	}
}

// dispatch hands out what is due and returns how long to sleep before the
// next look (kicks come sooner when work finishes or arrives).
func (q *Queue) dispatch() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	free := q.o.Workers - len(q.inflight)
	if free <= 0 {
		return time.Hour
	}
	now := q.o.Now()
	jobs, next, err := q.o.Store.Due(q.workCtx, now, free, func(j Job) bool {
		if _, busy := q.inflight[keyOf(j)]; busy {
			return true
		}
		return q.active[j.Domain] >= q.o.DomainConcurrency
	})
	if err != nil {
		q.log.Error("queue: reading the schedule", "err", err)
		return time.Second
	}
	for _, j := range jobs {
		q.inflight[keyOf(j)] = j
		q.active[j.Domain]++
		q.jobs <- j // never blocks: the channel holds Workers jobs
	}
	if next.IsZero() {
		return time.Hour
	}
	return max(next.Sub(now), time.Millisecond)
}

func (q *Queue) worker() {
	defer q.wg.Done()
	for j := range q.jobs {
		q.run(j)
	}
}

// run makes one attempt. The domain slot is given back as soon as the
// remote transaction is over, before the outcome is committed, so the
// next message to that domain overlaps this one's fsync.
func (q *Queue) run(j Job) {
	released := false
	// release kicks the scheduler only when it frees the slot: a second
	// call (the deferred one, after attempt released it) has nothing new
	// to tell, and each kick costs a scan of the schedule.
	release := func() {
		q.mu.Lock()
		if released {
			q.mu.Unlock()
			return
		}
		q.active[j.Domain]--
		if q.active[j.Domain] <= 0 {
			delete(q.active, j.Domain)
		}
		released = true
		q.mu.Unlock()
		q.Kick()
	}
	defer func() {
		release()
		q.mu.Lock()
		delete(q.inflight, keyOf(j))
		q.mu.Unlock()
		q.Kick()
	}()
	out, msg, ok := q.attempt(j, release)
	if !ok {
		q.unlease(j)
		return
	}
	finished, err := q.o.Store.Record(context.Background(), j, out)
	if err != nil {
		q.log.Error("queue: recording an attempt", "msg", j.MessageID, "rcpt", j.Index, "err", err)
		return
	}
	q.log.Info("delivery", "msg", j.MessageID, "rcpt", j.Index, "state", out.State, "reply", out.Reply)
	if q.o.Observe != nil && msg != nil {
		q.o.Observe(out.State, out.At.Sub(msg.ReceivedAt))
	}
	if finished && !msg.Inline {
		if err := q.o.Spool.Remove(j.MessageID); err != nil {
			q.log.Error("queue: removing a finished body", "msg", j.MessageID, "err", err)
		}
	}
}

// attempt delivers job once and decides its outcome; ok is false when the
// attempt was cut short by Stop and must be made again later.
func (q *Queue) attempt(j Job, release func()) (Outcome, *Message, bool) {
	msg, rcpt, err := q.o.Store.Load(q.workCtx, j)
	if errors.Is(err, ErrNotFound) {
		// A schedule entry whose message is gone: recording drops it.
		return Outcome{State: Bounced, Reply: "message record missing", At: q.o.Now()}, &Message{ID: j.MessageID}, true
	}
	if err != nil {
		q.log.Error("queue: loading a due job", "msg", j.MessageID, "rcpt", j.Index, "err", err)
		return Outcome{}, nil, false
	}
	if rcpt.State.Final() {
		return Outcome{State: rcpt.State, Reply: rcpt.LastReply, At: q.o.Now()}, msg, true
	}
	if q.o.Held != nil && q.o.Held(msg) {
		if err := q.o.Store.Hold(q.workCtx, j, q.o.Now().Add(HoldFor)); err != nil && q.workCtx.Err() == nil {
			q.log.Error("queue: holding a paused tenant's recipient", "msg", j.MessageID, "rcpt", j.Index, "err", err)
		}
		return Outcome{}, nil, false
	}
	buf := renderBufs.Get().(*bytes.Buffer)
	defer putRenderBuf(buf)
	if err := q.render(msg, rcpt, buf); err != nil {
		return q.unprepared(msg, rcpt, err), msg, true
	}
	rendered := buf.Bytes()
	env := outbound.Envelope{
		MessageID: msg.ID, Recipient: rcpt.Index,
		From: q.o.VERP.Address(msg.ID, rcpt.Index), To: rcpt.Address,
		Tenant: msg.Tenant, List: msg.List,
	}
	res := q.o.Transport.Deliver(q.workCtx, env, rendered)
	release()
	if q.workCtx.Err() != nil {
		return Outcome{}, nil, false
	}
	return q.decide(msg, rcpt, res), msg, true
}

// bounceOf reads a 5xx reply received while delivering: its reason and
// verdict by the rules a DSN is read by (report.Classify, report.Judge),
// so that "550 5.2.2 mailbox full" is a soft bounce however it arrives and
// "550 5.1.1 no such user" a hard one.
func bounceOf(res outbound.Result) Bounce {
	reason := report.Classify(res.Code, res.Enhanced, res.Text)
	class := byte('0' + res.Code/100)
	if res.Enhanced != "" {
		class = res.Enhanced[0]
	}
	return Bounce{Reason: reason, Verdict: report.Judge(reason, class), Status: res.Enhanced, Remote: true}
}

// localBounce is the Bounce of a failure Heed decided itself (an expired
// message, a copy it cannot prepare): soft, and not the recipient's
// server's word.
func localBounce(reply string) Bounce {
	code, enhanced, text := splitReply(reply)
	reason := report.Classify(code, enhanced, text)
	return Bounce{Reason: reason, Verdict: report.Soft, Status: enhanced}
}

// splitReply splits "554 5.3.0 text" into its code, enhanced code and
// text; what is missing is zero.
func splitReply(reply string) (int, string, string) {
	code, rest, _ := strings.Cut(reply, " ")
	n, err := strconv.Atoi(code)
	if err != nil || len(code) != 3 {
		return 0, "", reply
	}
	enh, text, _ := strings.Cut(rest, " ")
	if len(enh) < 5 || strings.Count(enh, ".") != 2 || enh[0] != code[0] {
		return n, "", rest
	}
	return n, enh, text
}

// unprepared decides the outcome of an attempt that stopped before
// sending: a suppressed recipient is final, a permanent reason bounces,
// anything else is retried like a 4xx until the message expires.
func (q *Queue) unprepared(msg *Message, rcpt Recipient, err error) Outcome {
	now := q.o.Now()
	var se *suppressedError
	var pe *permanentError
	switch {
	case errors.As(err, &se):
		return Outcome{State: Suppressed, Reply: se.Error(), Reason: string(se.entry.Reason), At: now}
	case errors.As(err, &pe):
		return Outcome{State: Bounced, Reply: pe.reply, Bounce: localBounce(pe.reply), At: now}
	}
	// The tenant sees the reply (events, the messages API): it gets a
	// reference, the operator's log gets the reason.
	ref := ids.New(q.o.Now())[10:]
	q.log.Warn("queue: cannot prepare a message; it stays queued", "msg", msg.ID, "rcpt", rcpt.Index, "ref", ref, "err", err)
	return q.decide(msg, rcpt, outbound.Result{Code: 451, Enhanced: "4.3.0",
		Text: "not sent yet: a temporary problem on the relay, will retry (ref " + ref + ")"})
}

func (q *Queue) decide(msg *Message, rcpt Recipient, res outbound.Result) Outcome {
	now := q.o.Now()
	out := Outcome{Reply: res.String(), At: now}
	switch {
	case res.Delivered():
		out.State = Delivered
	case res.Permanent():
		out.State = Bounced
		out.Bounce = bounceOf(res)
	default:
		expiry := msg.ReceivedAt.Add(q.o.MaxLifetime)
		if !now.Before(expiry) {
			out.State = Bounced
			out.Reply = "554 5.4.7 delivery time expired; last reply: " + res.String()
			out.Bounce = Bounce{Reason: report.Expired, Verdict: report.Soft, Status: "5.4.7"}
			break
		}
		out.State = Deferred
		out.NextAttempt = now.Add(q.o.Backoff(rcpt.Attempts + 1))
		if out.NextAttempt.After(expiry) {
			out.NextAttempt = expiry
		}
	}
	return out
}

// render reads the stored body and prepares the copy for rcpt.
func (q *Queue) render(msg *Message, rcpt Recipient, buf *bytes.Buffer) error {
	body := msg.Body
	if !msg.Inline {
		var err error
		if body, err = q.o.Spool.ReadAll(msg.ID); err != nil {
			// A body that cannot be read will not get better.
			return permanent("554 5.3.0 the stored message cannot be read: %v", err)
		}
	} else if body == nil {
		return permanent("554 5.3.0 the body of %s is missing from the database", msg.ID)
	}
	return q.prepare(q.workCtx, msg, rcpt, body, buf)
}

// renderBufs holds the buffers attempts render into: the rendered copy is
// only needed until Deliver returns, and a fresh one per attempt was most
// of the queue's own allocation.
var renderBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putRenderBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 { // a rare huge message does not stay pinned
		b.Reset()
		renderBufs.Put(b)
	}
}
