package tenant_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/postgres"
	. "github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
)

// failingRows is the registry's face with one write that fails: a
// failure half-way through a write, after the rows before it.
type failingRows struct {
	Rows
	failPutTenant, failPutDomain, failDeleteTenant bool
	failKey                                        string // PutKey of this selector fails
}

var errDiskFull = errors.New("disk full")

func (f failingRows) PutTenant(t Tenant) error {
	if f.failPutTenant {
		return errDiskFull
	}
	return f.Rows.PutTenant(t)
}

func (f failingRows) PutDomain(d Domain) error {
	if f.failPutDomain {
		return errDiskFull
	}
	return f.Rows.PutDomain(d)
}

func (f failingRows) DeleteTenant(id string) error {
	if f.failDeleteTenant {
		return errDiskFull
	}
	return f.Rows.DeleteTenant(id)
}

func (f failingRows) PutKey(k DKIMKey) error {
	if k.Selector == f.failKey {
		return errDiskFull
	}
	return f.Rows.PutKey(k)
}

// TestWritesAreAtomic: each write of the registry is one transaction, so
// one that fails at its last row leaves nothing of itself: no lists of a
// tenant that was not created, no keys of a domain that was not added,
// no key retired by a rotation that did not happen, nothing gone of a
// tenant whose deletion failed.
func TestWritesAreAtomic(t *testing.T) {
	eachRawBackend(t, func(t *testing.T, b backend.Backend, open func() *DBStore) {
		ctx := context.Background()
		s := open()
		failing := func(f failingRows) *DBStore {
			// The failing store shares the cache of s, as any second store
			// over the database does.
			return s.With(txn.Narrow(b, func(tx backend.Tx) Rows { f.Rows = tx.Tenants(); return f }))
		}

		if err := failing(failingRows{failPutTenant: true}).CreateTenant(ctx, Tenant{ID: "acme", CreatedAt: testTime}); !errors.Is(err, errDiskFull) {
			t.Fatalf("CreateTenant with a failing write: %v", err)
		}
		if ls, _ := s.Lists(ctx, "acme"); len(ls) != 0 {
			t.Errorf("lists of a tenant that was not created: %+v", ls)
		}
		if err := s.CreateTenant(ctx, Tenant{ID: "acme", CreatedAt: testTime}); err != nil {
			t.Fatalf("CreateTenant after the failed one: %v", err)
		}

		key := func(sel, state string) DKIMKey {
			return DKIMKey{Domain: "acme.test", Selector: sel, Algorithm: "rsa-sha256", State: state, Sealed: []byte("sealed " + sel), CreatedAt: testTime}
		}
		d := Domain{Name: "acme.test", Tenant: "acme", CreatedAt: testTime}
		if err := failing(failingRows{failPutDomain: true}).AddDomain(ctx, d, key("s1", KeyActive)); !errors.Is(err, errDiskFull) {
			t.Fatalf("AddDomain with a failing write: %v", err)
		}
		if ks, _ := s.Keys(ctx, "acme.test"); len(ks) != 0 {
			t.Errorf("keys of a domain that was not added: %+v", ks)
		}
		if err := s.AddDomain(ctx, d, key("s1", KeyActive)); err != nil {
			t.Fatal(err)
		}
		if err := s.PutKey(ctx, key("s2", KeyPublished)); err != nil {
			t.Fatal(err)
		}
		if err := failing(failingRows{failKey: "s2"}).ActivateKey(ctx, "acme.test", "s2", testTime.Add(time.Hour)); !errors.Is(err, errDiskFull) {
			t.Fatalf("ActivateKey with a failing write: %v", err)
		}
		ks, _ := s.Keys(ctx, "acme.test")
		if len(ks) != 2 || ks[0].State != KeyActive || ks[1].State != KeyPublished || !ks[0].RetiredAt.IsZero() {
			t.Errorf("after a failed rotation, keys %+v; want s1 active and s2 published", ks)
		}

		if _, err := (&Registry{Store: s, Now: time.Now}).CreateIP(ctx, "acme", "198.51.100.0/24", ""); err != nil {
			t.Fatal(err)
		}
		if err := failing(failingRows{failDeleteTenant: true}).DeleteTenant(ctx, "acme"); !errors.Is(err, errDiskFull) {
			t.Fatalf("DeleteTenant with a failing write: %v", err)
		}
		cs, _ := s.Credentials(ctx, "acme")
		ls, _ := s.Lists(ctx, "acme")
		ks, _ = s.Keys(ctx, "acme.test")
		if _, err := s.Domain(ctx, "acme.test"); err != nil || len(cs) != 1 || len(ls) != 2 || len(ks) != 2 {
			t.Errorf("after a failed deletion: domain %v, %d credentials, %d lists, %d keys; want all there", err, len(cs), len(ls), len(ks))
		}
		if _, err := s.CredentialForAddr(ctx, cs[0].Network.Addr()); err != nil {
			t.Errorf("after a failed deletion, the network: %v", err)
		}
	})
}

// pausingRows holds a transaction after it has read every network, the
// first time, until the other has too: both overlap checks then pass
// before either inserts, the race a single check-then-insert must not
// lose.
type pausingRows struct {
	Rows
	once        *sync.Once
	read, other chan struct{}
}

func (p pausingRows) Networks() ([]NetworkRef, error) {
	nets, err := p.Rows.Networks()
	p.once.Do(func() {
		close(p.read)
		<-p.other
	})
	return nets, err
}

// TestOverlappingCreatesAtOnce: two tenants register overlapping
// networks at the same moment, each transaction reading every network
// before either writes (on PostgreSQL; bbolt has one writer at a time, so
// there the two cannot interleave and run one after the other). Exactly
// one wins; the other is refused as if it came second, and the network
// is matched to the winner.
func TestOverlappingCreatesAtOnce(t *testing.T) {
	eachRawBackend(t, func(t *testing.T, b backend.Backend, open func() *DBStore) {
		ctx := context.Background()
		s := open()
		for _, id := range []string{"acme", "other"} {
			if err := s.CreateTenant(ctx, Tenant{ID: id, CreatedAt: testTime}); err != nil {
				t.Fatal(err)
			}
		}
		_, interleave := b.(*postgres.Backend)
		readA, readB := make(chan struct{}), make(chan struct{})
		store := func(read, other chan struct{}) *Registry {
			st := s
			if interleave {
				once := new(sync.Once)
				st = s.With(txn.Narrow(b, func(tx backend.Tx) Rows { return pausingRows{tx.Tenants(), once, read, other} }))
			}
			return &Registry{Store: st, Now: func() time.Time { return testTime }}
		}
		a, o := store(readA, readB), store(readB, readA)
		var wg sync.WaitGroup
		var errA, errO error
		wg.Go(func() { _, errA = a.CreateIPWithin(ctx, TenantNetworks, "acme", "198.51.100.0/24", "") })
		wg.Go(func() { _, errO = o.CreateIPWithin(ctx, TenantNetworks, "other", "198.51.100.128/25", "") })
		wg.Wait()
		winner := ""
		switch {
		case errA == nil && errors.Is(errO, ErrExists):
			winner = "acme"
		case errO == nil && errors.Is(errA, ErrExists):
			winner = "other"
		default:
			t.Fatalf("acme's /24: %v; other's /25 inside it: %v; want exactly one refused with ErrExists", errA, errO)
		}
		c, err := s.CredentialForAddr(ctx, netip.MustParseAddr("198.51.100.200"))
		if err != nil || c.Tenant != winner {
			t.Errorf("198.51.100.200 matched %+v, %v; want %s's", c, err, winner)
		}
		for _, id := range []string{"acme", "other"} {
			if cs, _ := s.Credentials(ctx, id); len(cs) != map[bool]int{true: 1, false: 0}[id == winner] {
				t.Errorf("%s holds %d credentials", id, len(cs))
			}
		}
	})
}
