package queue_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	. "github.com/heedmail/heed/internal/queue"
)

// seed writes n messages of one recipient each, accepted at at (1 ms
// apart), straight into the backend's rows in one transaction: finished
// (delivered) or pending (queued and scheduled), with an inline body.
func seed(t *testing.T, r rig, n int, at time.Time, addr string, finished bool) []string {
	t.Helper()
	var out []string
	err := r.b.Update(context.Background(), func(tx backend.Tx) error {
		out = out[:0]
		rows := tx.Queue()
		for i := range n {
			when := at.Add(time.Duration(i) * time.Millisecond)
			m := &Message{ID: ids.New(when), Tenant: "acme", List: "transactional", ReceivedAt: when, Pending: 1, Inline: true}
			rc := Recipient{Index: 0, Address: addr, State: Queued, UpdatedAt: when}
			if finished {
				m.Pending, rc.State = 0, Delivered
			} else if err := rows.Schedule(Job{MessageID: m.ID, Index: 0, Domain: "example.net", Due: when}); err != nil {
				return err
			}
			if err := rows.PutMessage(m); err != nil {
				return err
			}
			if err := rows.PutRecipient(m.ID, &rc); err != nil {
				return err
			}
			if err := rows.PutBody(m.ID, []byte("To: "+addr+"\r\n\r\nhi\r\n")); err != nil {
				return err
			}
			out = append(out, m.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPurgeFinishedMessages: retention deletes finished messages older
// than the cutoff with their recipients and bodies, across several
// transactions, and keeps pending and younger ones.
func TestPurgeFinishedMessages(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		old := seed(t, r, 1205, t0.Add(-48*time.Hour), "pat@example.net", true)
		pending := seed(t, r, 1, t0.Add(-47*time.Hour), "sam@example.net", false)
		young := seed(t, r, 1, t0, "kim@example.net", true)
		n, err := r.q.Purge(ctx, t0.Add(-24*time.Hour))
		if err != nil || n != len(old) {
			t.Fatalf("Purge = %d, %v; want %d", n, err, len(old))
		}
		for _, id := range []string{old[0], old[999], old[1000], old[1204]} {
			if _, err := r.q.Message(ctx, id); err == nil {
				t.Errorf("%s is still there", id)
			}
			if _, ok := storedBody(t, r, id); ok {
				t.Errorf("the body of %s is still there", id)
			}
		}
		err = r.b.View(ctx, func(tx backend.Tx) error {
			rs, err := tx.Queue().Recipients(old[1000])
			if len(rs) != 0 {
				t.Errorf("recipients of a purged message: %+v", rs)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range append(pending, young...) {
			if _, err := r.q.Message(ctx, id); err != nil {
				t.Errorf("%s: %v; want it kept", id, err)
			}
		}
		if n, err := r.q.Purge(ctx, t0.Add(-24*time.Hour)); err != nil || n != 0 {
			t.Errorf("a second Purge = %d, %v", n, err)
		}
	})
}

// TestPrivacyExportAndErasure: an export finds the address's recipients
// in every tenant, whatever its case; an erasure finishes those still
// pending, and leaves the address in no recipient row, reply, stored body
// or schedule entry, while a body still needed for another recipient
// stays, without the address.
func TestPrivacyExportAndErasure(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		const pat = "pat@example.net"
		both := newMessage(t0, pat, "sam@example.net")
		both.Body = []byte("To: Pat <pat@example.net>, sam@example.net\r\n\r\nHi Pat (PAT@example.net)\r\n")
		quoted := newMessage(t0.Add(time.Millisecond), "sam@example.net")
		other := newMessage(t0.Add(2*time.Millisecond), "PAT@Example.NET")
		other.Tenant = "globex"
		done := newMessage(t0.Add(3*time.Millisecond), pat)
		for _, m := range []*Message{both, quoted, other, done} {
			add(t, r, m)
		}
		jobs := due(t, r, t0.Add(time.Second))
		if _, err := r.q.Record(ctx, jobOf(t, jobs, quoted.ID, 0), Outcome{State: Deferred,
			Reply: "451 4.2.1 pat@example.net asked us to wait", NextAttempt: t0.Add(time.Hour), At: t0}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.q.Record(ctx, jobOf(t, jobs, done.ID, 0), Outcome{State: Delivered, Reply: "250 ok", At: t0}); err != nil {
			t.Fatal(err)
		}

		about, err := r.q.About(ctx, pat)
		if err != nil || len(about) != 3 {
			t.Fatalf("About = %+v, %v; want 3 recipients", about, err)
		}
		tenants := map[string]bool{}
		for _, a := range about {
			tenants[a.Tenant] = true
		}
		if !tenants["acme"] || !tenants["globex"] {
			t.Errorf("About's tenants %v", tenants)
		}

		n, err := r.q.Erase(ctx, pat, r.spool)
		if err != nil || n != 3 {
			t.Fatalf("Erase = %d, %v; want 3", n, err)
		}
		if about, _ := r.q.About(ctx, pat); len(about) != 0 {
			t.Errorf("after Erase, About = %+v", about)
		}
		assertNowhere(t, r, pat)

		got, _ := r.q.Message(ctx, both.ID)
		if rc := got.Recipients[0]; rc.Address != events.Erased || rc.State != Suppressed || got.Pending != 1 {
			t.Errorf("the erased recipient = %+v, pending %d", rc, got.Pending)
		}
		body, ok := storedBody(t, r, both.ID)
		if !ok || !bytes.Contains(body, []byte("sam@example.net")) {
			t.Errorf("the body still needed for sam: %q", body)
		}
		if got, _ := r.q.Message(ctx, quoted.ID); got.Recipients[0].LastReply != "451 4.2.1 "+events.Erased+" asked us to wait" {
			t.Errorf("the reply that quoted the address: %q", got.Recipients[0].LastReply)
		}
		if got, _ := r.q.Message(ctx, other.ID); got.Pending != 0 {
			t.Errorf("the other tenant's message is still pending: %+v", got)
		}
		if _, ok := storedBody(t, r, other.ID); ok {
			t.Error("a body no recipient needs any more stayed")
		}
		for _, j := range due(t, r, t0.Add(24*time.Hour)) {
			if j.MessageID == both.ID && j.Index == 0 || j.MessageID == other.ID {
				t.Errorf("an erased recipient is still scheduled: %+v", j)
			}
		}
	})
}

// TestErasureIsBounded: an address with more recipient rows than one
// transaction rewrites is erased from all of them.
func TestErasureIsBounded(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		const pat = "pat@example.net"
		seed(t, r, 1500, t0, pat, false)
		seed(t, r, 10, t0.Add(time.Hour), "sam@example.net", false)
		n, err := r.q.Erase(context.Background(), pat, r.spool)
		if err != nil || n != 1500 {
			t.Fatalf("Erase = %d, %v; want 1500", n, err)
		}
		assertNowhere(t, r, pat)
		if d, _ := r.q.Depth(); d != 10 {
			t.Errorf("Depth = %d after the erasure; want sam's 10", d)
		}
	})
}

// assertNowhere reads every recipient row and stored body, as the
// backend keeps them, for addr.
func assertNowhere(t *testing.T, r rig, addr string) {
	t.Helper()
	err := r.b.View(context.Background(), func(tx backend.Tx) error {
		rows := tx.Queue()
		for after := (*Cursor)(nil); ; {
			ds, next, err := rows.Mentioning(addr, after, 1000)
			if err != nil {
				return err
			}
			for _, d := range ds {
				t.Errorf("recipient %d of %s still mentions the address: %+v", d.Recipient.Index, d.MessageID, d.Recipient)
			}
			if next == nil {
				break
			}
			after = next
		}
		for after := ""; ; {
			ids, next, err := rows.BodiesMentioning(addr, after, 1000)
			if err != nil {
				return err
			}
			for _, id := range ids {
				body, _, _ := rows.Body(id)
				t.Errorf("the body of %s still mentions the address: %q", id, body)
			}
			if next == "" {
				return nil
			}
			after = next
		}
	})
	if err != nil {
		t.Fatal(fmt.Errorf("reading the rows: %w", err))
	}
}

// TestDeleteTenant: deleting a tenant deletes its messages, recipients,
// bodies and schedule entries, across several transactions, and leaves
// the other tenants' alone.
func TestDeleteTenant(t *testing.T) {
	eachBackend(t, func(t *testing.T, r rig) {
		ctx := context.Background()
		gone := seed(t, r, 1100, t0, "pat@example.net", false)
		finished := seed(t, r, 3, t0.Add(time.Hour), "pat@example.net", true)
		deferred := newMessage(t0.Add(2*time.Hour), "kim@example.net")
		add(t, r, deferred)
		if _, err := r.q.Record(ctx, Job{MessageID: deferred.ID, Index: 0, Domain: "example.net", Due: deferred.ReceivedAt}, Outcome{State: Deferred,
			Reply: "451 4.2.0 busy", NextAttempt: t0.Add(3 * time.Hour), At: t0.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		kept := newMessage(t0.Add(time.Hour), "sam@example.net")
		kept.Tenant = "globex"
		add(t, r, kept)

		if err := r.q.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{gone[0], gone[1099], finished[2], deferred.ID} {
			if _, err := r.q.Message(ctx, id); err == nil {
				t.Errorf("%s of the deleted tenant is still there", id)
			}
			if _, ok := storedBody(t, r, id); ok {
				t.Errorf("the body of %s is still there", id)
			}
		}
		jobs := due(t, r, t0.Add(24*time.Hour))
		if len(jobs) != 1 || jobs[0].MessageID != kept.ID {
			t.Errorf("due after the deletion: %d jobs (%+v); want globex's one", len(jobs), jobs[:min(len(jobs), 3)])
		}
		if got, err := r.q.Message(ctx, kept.ID); err != nil || got.Tenant != "globex" {
			t.Errorf("globex's message: %+v, %v", got, err)
		}
	})
}
