package smtpd

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
)

// countingRunner counts the read transactions a store opens.
type countingRunner struct {
	txn.Runner[suppression.Tx]
	views atomic.Int64
}

func (c *countingRunner) View(ctx context.Context, fn func(suppression.Tx) error) error {
	c.views.Add(1)
	return c.Runner.View(ctx, fn)
}

// TestSuppressionCheckedOncePerMessage: the accept of a message of 50
// recipients reads the suppression list once (one transaction on bbolt,
// one query on PostgreSQL: suppression's TestCheckAllOneRead holds the
// backends to it), not once per recipient, and each recipient still gets
// its own verdict by the policy: a bounce and a block of every list stop
// it, an opt-out of marketing does not stop this transactional list, an
// opt-out of this very list does, and another tenant's entries do not.
func TestSuppressionCheckedOncePerMessage(t *testing.T) {
	h := newHarness(t, func(o *SubmissionOptions) { o.MaxRecipients = 50 })
	runner := &countingRunner{Runner: txn.Narrow(boltdb.New(h.db), func(tx backend.Tx) suppression.Tx { return tx })}
	sup := suppression.New(runner, []byte("smtpd test hash key"), time.Now)
	h.sub.o.Suppressions = sup
	ctx := context.Background()
	rcpt := func(i int) string { return fmt.Sprintf("r%02d@example.net", i) }
	entries := []suppression.Entry{
		{Tenant: "acme", Address: rcpt(3), List: suppression.All, Reason: suppression.Bounce},
		{Tenant: "acme", Address: rcpt(10), List: suppression.All, Reason: suppression.Manual},
		{Tenant: "acme", Address: rcpt(17), List: suppression.All, Reason: suppression.Unsubscribe},
		{Tenant: "acme", Address: rcpt(24), List: "transactional", Reason: suppression.Unsubscribe},
		{Tenant: "acme", Address: rcpt(31), List: "marketing", Reason: suppression.Unsubscribe},
		{Tenant: "other", Address: rcpt(38), List: suppression.All, Reason: suppression.Complaint},
		{Tenant: "acme", Address: rcpt(49), List: suppression.All, Reason: suppression.Complaint},
	}
	for _, e := range entries {
		if _, err := sup.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	want := map[int]string{3: "bounce", 10: "manual", 24: "unsubscribe", 49: "complaint"}

	to := make([]string, 50)
	for i := range to {
		to[i] = rcpt(i)
	}
	c := h.login()
	before := runner.views.Load()
	text := sendText(t, c, to, "From: app@acme.test\r\nSubject: reminder\r\n\r\nSee you.\r\n")
	if n := runner.views.Load() - before; n != 1 {
		t.Errorf("the accept of a 50-recipient message read the suppression list %d times, want once", n)
	}
	if !strings.Contains(text, fmt.Sprintf("%d of 50 recipients are suppressed", len(want))) {
		t.Errorf("250 text %q", text)
	}
	m, err := boltdb.Queue(h.db).Message(ctx, regexp.MustCompile(`queued as ([0-9a-z]+)`).FindStringSubmatch(text)[1])
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range m.Recipients {
		reason, hit := want[i]
		if got := r.State == queue.Suppressed; got != hit || r.Reason != reason && hit {
			t.Errorf("recipient %d (%s): state %s reason %q, want suppressed %v (%q)", i, r.Address, r.State, r.Reason, hit, reason)
		}
	}
	c.Quit()
}
