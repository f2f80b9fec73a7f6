package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	. "github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/report"
)

// newMessage is a message of tenant acme accepted at at, to rcpts, with a
// body kept in the database.
func newMessage(at time.Time, rcpts ...string) *Message {
	m := &Message{ID: ids.New(at), Tenant: "acme", List: "transactional", From: "a@acme.test", ReceivedAt: at,
		Body: []byte("From: a@acme.test\r\nSubject: hi\r\n\r\nhello\r\n")}
	for i, a := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Index: i, Address: a})
	}
	return m
}

func add(t *testing.T, r rig, m *Message) {
	t.Helper()
	if err := r.q.Add(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// due returns every job due at now, failing the test on an error.
func due(t *testing.T, r rig, now time.Time) []Job {
	t.Helper()
	jobs, _, err := r.q.Due(context.Background(), now, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

func jobOf(t *testing.T, jobs []Job, id string, idx int) Job {
	t.Helper()
	for _, j := range jobs {
		if j.MessageID == id && j.Index == idx {
			return j
		}
	}
	t.Fatalf("no job for recipient %d of %s among %d", idx, id, len(jobs))
	return Job{}
}

func types(t *testing.T, r rig, tenant string) []events.Type {
	t.Helper()
	evs, err := r.log.Events(context.Background(), tenant, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Type
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// storedBody reads the body of message id kept in the database.
func storedBody(t *testing.T, r rig, id string) ([]byte, bool) {
	t.Helper()
	var body []byte
	var ok bool
	err := r.b.View(context.Background(), func(tx backend.Tx) error {
		var err error
		body, ok, err = tx.Queue().Body(id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return body, ok
}

// TestAcceptIsAtomic: a message, its recipients, its body, its schedule
// entries and its message.accepted events are one transaction; a failure
// at the last event leaves none of them, so no 250 is ever answered for
// a message part of which is missing, and no webhook tells of one.
func TestAcceptIsAtomic(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		m := newMessage(t0, "a@example.net", "b@example.org", "c@example.com")
		if err := r.failing(events.MessageAccepted, 2).Add(ctx, m); !errors.Is(err, errDiskFull) {
			t.Fatalf("Add with a failing third event: %v", err)
		}
		if _, err := r.q.Message(ctx, m.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("after a failed Add, Message = %v; want ErrNotFound", err)
		}
		if jobs := due(t, r, t0.Add(time.Hour)); len(jobs) != 0 {
			t.Errorf("after a failed Add, due jobs %+v", jobs)
		}
		if n, err := r.q.Depth(); err != nil || n != 0 {
			t.Errorf("after a failed Add, Depth = %d, %v", n, err)
		}
		if _, ok := storedBody(t, r, m.ID); ok {
			t.Error("after a failed Add, its body is stored")
		}
		if ts := types(t, r, "acme"); len(ts) != 0 {
			t.Errorf("after a failed Add, events %v", ts)
		}

		add(t, r, m)
		got, err := r.q.Message(ctx, m.ID)
		if err != nil || len(got.Recipients) != 3 || got.Pending != 3 || !got.Inline {
			t.Fatalf("Message = %+v, %v; want 3 pending recipients and an inline body", got, err)
		}
		if n, _ := r.q.Depth(); n != 3 {
			t.Errorf("Depth = %d, want 3", n)
		}
		want := []events.Type{events.MessageAccepted, events.MessageAccepted, events.MessageAccepted}
		if ts := types(t, r, "acme"); !slices.Equal(ts, want) {
			t.Errorf("events %v, want %v", ts, want)
		}
	})
}

// TestAcceptSuppressed: a recipient found on the suppression list at
// accept time is final at once, with a message.suppressed event and no
// schedule entry; a message with no other recipient stores no body.
func TestAcceptSuppressed(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		m := newMessage(t0, "gone@example.net")
		m.Recipients[0].State, m.Recipients[0].Reason = Suppressed, "bounce"
		add(t, r, m)
		got, err := r.q.Message(context.Background(), m.ID)
		if err != nil || got.Pending != 0 || got.Inline || got.Recipients[0].State != Suppressed {
			t.Fatalf("Message = %+v, %v", got, err)
		}
		if _, ok := storedBody(t, r, m.ID); ok {
			t.Error("a message with every recipient suppressed stored its body")
		}
		if jobs := due(t, r, t0.Add(time.Hour)); len(jobs) != 0 {
			t.Errorf("due jobs %+v", jobs)
		}
		if ts := types(t, r, "acme"); !slices.Equal(ts, []events.Type{events.MessageSuppressed}) {
			t.Errorf("events %v", ts)
		}
	})
}

// TestDueInScheduleOrder: the scheduler reads due recipients earliest
// first (then by message and index), up to its limit, skipping what it
// is told to, and learns when the first one not yet due is.
func TestDueInScheduleOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		late := newMessage(t0.Add(2*time.Second), "x@one.example")
		first := newMessage(t0, "a@two.example", "b@three.example")
		second := newMessage(t0.Add(time.Second), "c@four.example")
		for _, m := range []*Message{late, first, second} {
			add(t, r, m)
		}
		now := t0.Add(1500 * time.Millisecond)
		jobs, next, err := r.q.Due(ctx, now, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, j := range jobs {
			got = append(got, fmt.Sprintf("%s/%d@%s", j.MessageID, j.Index, j.Domain))
		}
		want := []string{first.ID + "/0@two.example", first.ID + "/1@three.example", second.ID + "/0@four.example"}
		if !slices.Equal(got, want) {
			t.Errorf("Due = %v, want %v", got, want)
		}
		if !jobs[0].Due.Equal(t0) || !jobs[2].Due.Equal(t0.Add(time.Second)) {
			t.Errorf("due times %v, %v", jobs[0].Due, jobs[2].Due)
		}
		if !next.Equal(late.ReceivedAt) {
			t.Errorf("next = %v, want %v", next, late.ReceivedAt)
		}

		jobs, _, _ = r.q.Due(ctx, now, 2, func(j Job) bool { return j.MessageID == first.ID && j.Index == 0 })
		if len(jobs) != 2 || jobs[0].MessageID != first.ID || jobs[0].Index != 1 || jobs[1].MessageID != second.ID {
			t.Errorf("Due with a skip and a limit of 2 = %+v", jobs)
		}
		if jobs, next, _ := r.q.Due(ctx, t0.Add(time.Hour), 10, nil); len(jobs) != 4 || !next.IsZero() {
			t.Errorf("everything due: %d jobs, next %v; want 4 and none", len(jobs), next)
		}
	})
}

// TestMessageLookup: a message is found by its id with its recipients in
// index order (GET /api/v1/messages/{id}); Load gives an attempt its
// message, body and recipient.
func TestMessageLookup(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		var rcpts []string
		for i := range 12 {
			rcpts = append(rcpts, fmt.Sprintf("r%d@example.net", i))
		}
		m := newMessage(t0, rcpts...)
		m.Client = Client{Helo: "app.acme.test", Auth: true}
		add(t, r, m)
		if _, err := r.q.Message(ctx, ids.New(t0)); !errors.Is(err, ErrNotFound) {
			t.Errorf("an unknown id: %v, want ErrNotFound", err)
		}
		got, err := r.q.Message(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Tenant != "acme" || got.List != "transactional" || !got.ReceivedAt.Equal(t0) || got.Client != m.Client || len(got.Recipients) != 12 {
			t.Fatalf("Message = %+v", got)
		}
		for i, rc := range got.Recipients {
			if rc.Index != i || rc.Address != rcpts[i] || rc.State != Queued || !rc.UpdatedAt.Equal(t0) {
				t.Errorf("recipient %d = %+v", i, rc)
			}
		}
		msg, rc, err := r.q.Load(ctx, jobOf(t, due(t, r, t0), m.ID, 10))
		if err != nil || !bytes.Equal(msg.Body, m.Body) || rc.Address != "r10@example.net" || len(msg.Recipients) != 0 {
			t.Errorf("Load = %+v, %+v, %v", msg, rc, err)
		}
		if _, _, err := r.q.Load(ctx, Job{MessageID: m.ID, Index: 12}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load of a recipient that is not there: %v", err)
		}
		if _, _, err := r.q.Load(ctx, Job{MessageID: ids.New(t0), Index: 0}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load of a message that is not there: %v", err)
		}
		// A stale entry, of a recipient or a message that is not there,
		// is dropped without a word.
		for _, j := range []Job{{MessageID: m.ID, Index: 12, Due: t0}, {MessageID: ids.New(t0), Due: t0}} {
			if done, err := r.q.Record(ctx, j, Outcome{State: Delivered, At: t0}); done || err != nil {
				t.Errorf("Record of %+v = %v, %v", j, done, err)
			}
		}
	})
}

var (
	hard = Bounce{Reason: report.UserUnknown, Verdict: report.Hard, Status: "5.1.1", Remote: true}
	soft = Bounce{Reason: report.MailboxFull, Verdict: report.Soft, Status: "5.2.2", Remote: true}
)

// TestRecordResults: each outcome moves its recipient, its schedule
// entry and the message's pending count, writes its event, and (for a
// bounce from the recipient's server) the suppression or soft-bounce
// history; the last final recipient finishes the message and drops its
// body.
func TestRecordResults(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		m := newMessage(t0, "ok@example.net", "later@example.net", "gone@example.net", "full@example.net")
		add(t, r, m)
		jobs := due(t, r, t0)
		record := func(j Job, out Outcome) bool {
			t.Helper()
			done, err := r.q.Record(ctx, j, out)
			if err != nil {
				t.Fatal(err)
			}
			return done
		}
		if record(jobOf(t, jobs, m.ID, 0), Outcome{State: Delivered, Reply: "250 ok", At: t0.Add(time.Second)}) {
			t.Error("finished after the first of four")
		}
		retry := t0.Add(10 * time.Minute)
		record(jobOf(t, jobs, m.ID, 1), Outcome{State: Deferred, Reply: "451 4.2.0 busy", NextAttempt: retry, At: t0.Add(time.Second)})
		record(jobOf(t, jobs, m.ID, 2), Outcome{State: Bounced, Reply: "550 5.1.1 no such user", Bounce: hard, At: t0.Add(time.Second)})
		record(jobOf(t, jobs, m.ID, 3), Outcome{State: Bounced, Reply: "552 5.2.2 mailbox full", Bounce: soft, At: t0.Add(time.Second)})

		if jobs := due(t, r, t0.Add(time.Minute)); len(jobs) != 0 {
			t.Errorf("due before the retry: %+v", jobs)
		}
		later := due(t, r, retry)
		if len(later) != 1 || later[0].Index != 1 || !later[0].Due.Equal(retry) {
			t.Fatalf("due at the retry: %+v", later)
		}
		got, _ := r.q.Message(ctx, m.ID)
		states := []State{Delivered, Deferred, Bounced, Bounced}
		for i, rc := range got.Recipients {
			if rc.State != states[i] || rc.Attempts != 1 {
				t.Errorf("recipient %d = %+v, want %s after 1 attempt", i, rc, states[i])
			}
		}
		if rc := got.Recipients[1]; !rc.NextAttempt.Equal(retry) || rc.LastReply != "451 4.2.0 busy" {
			t.Errorf("the deferred recipient = %+v", rc)
		}
		if got.Pending != 1 {
			t.Errorf("Pending = %d, want 1", got.Pending)
		}
		if es, _ := r.sup.Lookup(ctx, "acme", "gone@example.net"); len(es) != 1 || es[0].MessageID != m.ID {
			t.Errorf("the hard bounce's suppression: %+v", es)
		}
		if es, _ := r.sup.Lookup(ctx, "acme", "full@example.net"); len(es) != 0 {
			t.Errorf("one soft bounce suppressed: %+v", es)
		}
		if hs, _ := r.sup.SoftBouncesEverywhere(ctx, "full@example.net"); len(hs) != 1 || len(hs[0].Bounces) != 1 {
			t.Errorf("the soft bounce's history: %+v", hs)
		}

		if !record(later[0], Outcome{State: Delivered, Reply: "250 ok", At: retry}) {
			t.Error("the last recipient did not finish the message")
		}
		if _, ok := storedBody(t, r, m.ID); ok {
			t.Error("a finished message kept its body")
		}
		if record(later[0], Outcome{State: Delivered, Reply: "250 ok", At: retry}) {
			t.Error("a stale entry finished the message again")
		}
		want := []events.Type{events.MessageAccepted, events.MessageAccepted, events.MessageAccepted, events.MessageAccepted,
			events.MessageDelivered, events.MessageDeferred, events.MessageBounced, events.SuppressionAdded,
			events.MessageBounced, events.MessageDelivered}
		if ts := types(t, r, "acme"); !slices.Equal(ts, want) {
			t.Errorf("events %v\nwant %v", ts, want)
		}
		if n, _ := r.q.Depth(); n != 0 {
			t.Errorf("Depth = %d after every outcome", n)
		}
	})
}

// TestRecordIsAtomic: an outcome, its event and the suppression a hard
// bounce makes are one transaction: when the last write fails, the
// recipient is still queued and due, and neither the bounce nor the
// suppression is there; the next attempt records all of it.
func TestRecordIsAtomic(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		m := newMessage(t0, "gone@example.net")
		add(t, r, m)
		j := jobOf(t, due(t, r, t0), m.ID, 0)
		out := Outcome{State: Bounced, Reply: "550 5.1.1 no such user", Bounce: hard, At: t0.Add(time.Second)}
		if _, err := r.failing(events.SuppressionAdded, 0).Record(ctx, j, out); !errors.Is(err, errDiskFull) {
			t.Fatalf("Record with a failing suppression event: %v", err)
		}
		got, _ := r.q.Message(ctx, m.ID)
		if rc := got.Recipients[0]; rc.State != Queued || rc.Attempts != 0 || got.Pending != 1 {
			t.Errorf("after a failed Record: %+v, pending %d", rc, got.Pending)
		}
		if jobs := due(t, r, t0); len(jobs) != 1 {
			t.Errorf("after a failed Record, due %+v; want the job again", jobs)
		}
		if es, _ := r.sup.Lookup(ctx, "acme", "gone@example.net"); len(es) != 0 {
			t.Errorf("suppressed without its bounce: %+v", es)
		}
		if ts := types(t, r, "acme"); !slices.Equal(ts, []events.Type{events.MessageAccepted}) {
			t.Errorf("after a failed Record, events %v", ts)
		}
		if _, err := r.q.Record(ctx, j, out); err != nil {
			t.Fatal(err)
		}
		if es, _ := r.sup.Lookup(ctx, "acme", "gone@example.net"); len(es) != 1 {
			t.Errorf("after the Record: %+v", es)
		}
	})
}
