package suppression_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	. "github.com/heedmail/heed/suppression"
)

// countingTx counts the reads of entries its Rows make: one Entries call
// is one query on PostgreSQL (addr_key = ANY) and one cursor seek per
// address in the one bbolt transaction.
type countingTx struct {
	backend.Tx
	reads *atomic.Int64
}

func (c countingTx) Suppressions() Rows { return countingRows{c.Tx.Suppressions(), c.reads} }

type countingRows struct {
	Rows
	reads *atomic.Int64
}

func (r countingRows) Entries(tenant string, hs ...Hash) ([]Row, error) {
	r.reads.Add(1)
	return r.Rows.Entries(tenant, hs...)
}

// TestCheckAllOneRead: CheckAll answers for the 50 recipients of a
// message in one transaction and one read of the rows, on each backend,
// and its verdicts are Check's, address by address, on a transactional
// and on a marketing list.
func TestCheckAllOneRead(t *testing.T) {
	eachRawBackend(t, func(t *testing.T, b backend.Backend) {
		ctx := context.Background()
		var txs, reads atomic.Int64
		s := New(txn.Narrow(b, func(tx backend.Tx) Tx {
			txs.Add(1)
			return countingTx{tx, &reads}
		}), testHashKey, func() time.Time { return testNow })
		addr := func(i int) string { return fmt.Sprintf("R%02d@Example.net", i) }
		for _, e := range []Entry{
			{Address: addr(1), List: All, Reason: Bounce},
			{Address: addr(2), List: All, Reason: Complaint},
			{Address: addr(3), List: All, Reason: Manual},
			{Address: addr(4), List: All, Reason: Unsubscribe},
			{Address: addr(5), List: "news", Reason: Unsubscribe},
			{Address: addr(6), List: "receipts", Reason: Manual},
			{Address: addr(7), List: All, Reason: Import},
			{Address: addr(8), List: All, Reason: Unsubscribe},
			{Address: addr(8), List: All, Reason: Bounce}, // the strongest is reported
			// Another tenant's entry stops nothing of acme's.
			{Tenant: "other", Address: addr(9), List: All, Reason: Complaint},
		} {
			if e.Tenant == "" {
				e.Tenant = "acme"
			}
			if _, err := s.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		addrs := make([]string, 50)
		for i := range addrs {
			addrs[i] = addr(i)
		}
		for _, l := range []struct{ id, kind string }{{"receipts", tenant.Transactional}, {"news", tenant.Marketing}} {
			txs.Store(0)
			reads.Store(0)
			vs, err := CheckAll(ctx, s, "acme", l.id, l.kind, addrs)
			if err != nil {
				t.Fatal(err)
			}
			if txs.Load() != 1 || reads.Load() != 1 {
				t.Errorf("%s: CheckAll of 50 addresses took %d transactions and %d reads, want 1 and 1", l.id, txs.Load(), reads.Load())
			}
			hits := 0
			for i, a := range addrs {
				e, hit, err := Check(ctx, s, "acme", l.id, l.kind, a)
				if err != nil {
					t.Fatal(err)
				}
				if vs[i].Hit != hit || hit && (vs[i].Entry.Reason != e.Reason || vs[i].Entry.List != e.List) {
					t.Errorf("%s, %s: CheckAll says %+v, Check says %v %+v", l.id, a, vs[i], hit, e)
				}
				if hit {
					hits++
				}
			}
			// receipts: 1, 2, 3, 6, 8; news: 1, 2, 3, 4, 5, 7, 8.
			if want := map[string]int{"receipts": 5, "news": 7}[l.id]; hits != want {
				t.Errorf("%s: %d addresses suppressed, want %d", l.id, hits, want)
			}
		}
		if _, err := CheckAll(ctx, s, "acme", "news", tenant.Marketing, []string{addr(1), "not an address"}); err == nil {
			t.Error("CheckAll with an address that does not normalise: no error")
		}
	})
}
