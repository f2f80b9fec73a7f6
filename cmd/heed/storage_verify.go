package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// tally is the rows of one backend, counted by walking its faces, in the
// order they are printed.
type tally struct {
	names []string
	n     map[string]uint64
}

func (t *tally) add(name string, n uint64) {
	if t.n == nil {
		t.n = map[string]uint64{}
	}
	if _, ok := t.n[name]; !ok {
		t.names = append(t.names, name)
	}
	t.n[name] += n
}

// set sets name's count to n.
func (t *tally) set(name string, n uint64) {
	t.add(name, 0)
	t.n[name] = n
}

// errMismatch is verifyCopy's error: the table of counts says where.
var errMismatch = errors.New("storage copy: the copy does not match the source (see the counts above); do not switch to PostgreSQL")

// verifyCopy counts every store's rows on both backends, per tenant for
// the suppression lists, checks that every suppression of the source is
// found on the target by its key, prints the counts, and fails on any
// difference.
func verifyCopy(ctx context.Context, src, dst backend.Backend, spool *queue.Spool, out io.Writer) error {
	a, err := count(ctx, src, spool)
	if err != nil {
		return fmt.Errorf("storage copy: counting the source: %w", err)
	}
	b, err := count(ctx, dst, nil)
	if err != nil {
		return fmt.Errorf("storage copy: counting the target: %w", err)
	}
	missing, err := missingSuppressions(ctx, src, dst)
	if err != nil {
		return fmt.Errorf("storage copy: checking suppressions: %w", err)
	}
	for _, n := range b.names {
		a.add(n, 0) // a row only the target has shows too
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rows\tbbolt\tpostgres\t\t")
	bad := missing > 0
	for _, n := range a.names {
		mark := "ok"
		if a.n[n] != b.n[n] {
			mark, bad = "MISMATCH", true
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", n, a.n[n], b.n[n], mark)
	}
	tw.Flush()
	if missing > 0 {
		fmt.Fprintf(out, "%d suppressions of the source are not found on the target\n", missing)
	}
	if bad {
		return errMismatch
	}
	fmt.Fprintln(out, "every count matches, and every suppression is found on PostgreSQL by its key")
	return nil
}

// count walks every store of b. spool, for bbolt, holds the bodies over
// 64 KiB; a body counts when a recipient still needs it.
func count(ctx context.Context, b backend.Backend, spool *queue.Spool) (*tally, error) {
	t := &tally{}
	for _, step := range []func(context.Context, backend.Backend, *tally) error{
		countTenants, countSuppressions, countLogs, countWebhooks,
	} {
		if err := step(ctx, b, t); err != nil {
			return nil, err
		}
	}
	return t, countQueue(ctx, b, spool, t)
}

func countTenants(ctx context.Context, b backend.Backend, t *tally) error {
	ids, err := tenantIDs(ctx, b)
	if err != nil {
		return err
	}
	t.add("tenants", uint64(len(ids)))
	for _, id := range ids {
		var r tenantRows
		if err := b.View(ctx, func(tx backend.Tx) error { return r.read(tx, id) }); err != nil {
			return err
		}
		t.add("lists", uint64(len(r.lists)))
		t.add("credentials and API keys", uint64(len(r.creds)))
		t.add("domains", uint64(len(r.doms)))
		t.add("DKIM keys", uint64(len(r.keys)))
	}
	return nil
}

func countSuppressions(ctx context.Context, b backend.Backend, t *tally) error {
	ids, err := tenantIDs(ctx, b)
	if err != nil {
		return err
	}
	t.add("suppressions", 0)
	for _, id := range ids {
		err := pageSuppressions(ctx, b, id, func(rs []suppression.Row) error {
			t.add("suppressions", uint64(len(rs)))
			t.add("  of tenant "+id, uint64(len(rs)))
			return nil
		})
		if err != nil {
			return err
		}
	}
	for after := ""; ; {
		var hs []suppression.HistoryRow
		if err := b.View(ctx, func(tx backend.Tx) (err error) {
			hs, after, err = tx.Suppressions().Histories(after, copyBatch)
			return err
		}); err != nil {
			return err
		}
		t.add("soft-bounce histories", uint64(len(hs)))
		if after == "" {
			return nil
		}
	}
}

func pageSuppressions(ctx context.Context, b backend.Backend, tenant string, fn func([]suppression.Row) error) error {
	var after *suppression.Key
	for {
		var rs []suppression.Row
		if err := b.View(ctx, func(tx backend.Tx) (err error) {
			rs, after, err = tx.Suppressions().Page(tenant, "", after, copyBatch)
			return err
		}); err != nil {
			return err
		}
		if err := fn(rs); err != nil {
			return err
		}
		if after == nil {
			return nil
		}
	}
}

// countLogs counts the events and audit records and takes their last
// sequence numbers, which must agree for cursors to mean the same.
func countLogs(ctx context.Context, b backend.Backend, t *tally) error {
	return b.View(ctx, func(tx backend.Tx) error {
		t.add("events", 0)
		for after := uint64(0); ; {
			evs, err := tx.Events().All(after, copyBatch)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				break
			}
			t.add("events", uint64(len(evs)))
			after = evs[len(evs)-1].Seq
			t.set("  newest event's seq", after)
		}
		t.add("audit records", 0)
		for after := uint64(0); ; {
			rs, err := tx.Audit().Records("", after, copyBatch)
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				return nil
			}
			t.add("audit records", uint64(len(rs)))
			after = rs[len(rs)-1].Seq
			t.set("  newest audit record's seq", after)
		}
	})
}

func countWebhooks(ctx context.Context, b backend.Backend, t *tally) error {
	return b.View(ctx, func(tx backend.Tx) error {
		eps, err := tx.Webhooks().Endpoints("")
		if err != nil {
			return err
		}
		t.add("webhook endpoints", uint64(len(eps)))
		t.add("webhook deliveries", 0)
		for _, ep := range eps {
			// The cursors, summed: a cursor copied wrong shows here.
			t.add("  webhook cursors (sum)", ep.Cursor)
			for from, more := uint64(math.MaxUint64), true; more; {
				var ds []webhooks.Delivery
				if ds, from, more, err = tx.Webhooks().Deliveries(ep.Tenant, ep.ID, "", from, copyBatch, copyBatch); err != nil {
					return err
				}
				t.add("webhook deliveries", uint64(len(ds)))
			}
		}
		n, err := tx.Webhooks().CountScheduled()
		t.add("  webhook retries scheduled", uint64(n))
		return err
	})
}

func countQueue(ctx context.Context, b backend.Backend, spool *queue.Spool, t *tally) error {
	err := b.View(ctx, func(tx backend.Tx) error {
		rows := tx.Queue()
		t.add("queued messages", 0)
		t.add("recipients", 0)
		t.add("message bodies", 0)
		for after := ""; ; {
			ms, err := rows.Messages(after, copyBatch)
			if err != nil || len(ms) == 0 {
				return err
			}
			for _, m := range ms {
				rs, err := rows.Recipients(m.ID)
				if err != nil {
					return err
				}
				t.add("queued messages", 1)
				t.add("recipients", uint64(len(rs)))
				if m.Pending > 0 && hasBody(rows, spool, m) {
					t.add("message bodies", 1)
				}
			}
			after = ms[len(ms)-1].ID
		}
	})
	if err != nil {
		return err
	}
	return b.View(ctx, func(tx backend.Tx) error {
		n, err := tx.Queue().Depth()
		t.set("schedule entries", uint64(n))
		return err
	})
}

func hasBody(rows queue.Rows, spool *queue.Spool, m queue.Message) bool {
	if m.Inline || spool == nil {
		_, ok, err := rows.Body(m.ID)
		return ok && err == nil
	}
	_, err := spool.ReadAll(m.ID)
	return err == nil
}

// missingSuppressions looks every suppression of src up on dst by its key
// (tenant, hash, scope, reason), a page at a time, and counts those not
// found: the opt-outs the copy must not lose.
func missingSuppressions(ctx context.Context, src, dst backend.Backend) (int, error) {
	ids, err := tenantIDs(ctx, src)
	if err != nil {
		return 0, err
	}
	missing := 0
	for _, id := range ids {
		err := pageSuppressions(ctx, src, id, func(rs []suppression.Row) error {
			hashes := make([]suppression.Hash, 0, len(rs))
			for _, r := range rs {
				hashes = append(hashes, r.Hash)
			}
			return dst.View(ctx, func(tx backend.Tx) error {
				found, err := tx.Suppressions().Entries(id, hashes...)
				if err != nil {
					return err
				}
				have := make(map[suppression.Key]bool, len(found))
				for _, f := range found {
					have[f.Key()] = true
				}
				for _, r := range rs {
					if !have[r.Key()] {
						missing++
					}
				}
				return nil
			})
		})
		if err != nil {
			return 0, err
		}
	}
	return missing, nil
}
