package tenant_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	. "github.com/heedmail/heed/internal/tenant"
)

// TestReadsSeeEveryWrite: the records messages read are cached, and every
// write is seen by the next read, through the store that wrote it and
// through another store over the same database.
func TestReadsSeeEveryWrite(t *testing.T) { eachRawBackend(t, testReadsSeeEveryWrite) }

func testReadsSeeEveryWrite(t *testing.T, _ backend.Backend, open func() *DBStore) {
	ctx := context.Background()
	w, other := open(), open()
	now := time.Now().UTC()
	// Each step writes through w, then checks both stores; every read
	// before a write is made twice, so the value it checks is the cached
	// one.
	read := func(step string, check func(s *DBStore) error) {
		t.Helper()
		for _, s := range []*DBStore{w, other, w, other} {
			if err := check(s); err != nil {
				t.Errorf("%s: %v", step, err)
				return
			}
		}
	}
	// served checks that the record a step read is now in the cache: a
	// cache that kept nothing would pass every read above.
	served := func(step string, kind CacheKind, k string) {
		t.Helper()
		if !w.Cached(kind, k) {
			t.Errorf("%s: %s is not served from the cache", step, k)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	tenantIs := func(postal string) func(*DBStore) error {
		return func(s *DBStore) error {
			got, err := s.Tenant(ctx, "acme")
			if err != nil || got.PostalAddress != postal {
				return fmt.Errorf("Tenant = %q, %v; want postal address %q", got.PostalAddress, err, postal)
			}
			return nil
		}
	}
	must(w.CreateTenant(ctx, Tenant{ID: "acme", Name: "Acme", CreatedAt: now}))
	must(w.CreateTenant(ctx, Tenant{ID: "other", Name: "Other", CreatedAt: now}))
	read("created", tenantIs(""))
	served("created", CacheTenant, "acme")
	must(w.UpdateTenant(ctx, Tenant{ID: "acme", Name: "Acme", PostalAddress: "1 Main St", CreatedAt: now}))
	read("postal address set", tenantIs("1 Main St"))

	listIs := func(kind string, unsub bool) func(*DBStore) error {
		return func(s *DBStore) error {
			got, err := s.List(ctx, "acme", "news")
			if kind == "" {
				if !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("List = %+v, %v; want ErrNotFound", got, err)
				}
				return nil
			}
			if err != nil || got.Kind != kind || got.Unsubscribe != unsub {
				return fmt.Errorf("List = %+v, %v; want kind %s, unsubscribe %v", got, err, kind, unsub)
			}
			return nil
		}
	}
	read("no list yet", listIs("", false))
	must(w.PutList(ctx, List{Tenant: "acme", ID: "news", Name: "News", Kind: Transactional, CreatedAt: now}))
	read("list created", listIs(Transactional, false))
	served("list created", CacheList, "acme\x00news")
	must(w.PutList(ctx, List{Tenant: "acme", ID: "news", Name: "News", Kind: Transactional, Unsubscribe: true, CreatedAt: now}))
	read("list changed", listIs(Transactional, true))

	domainOwner := func(owner string) func(*DBStore) error {
		return func(s *DBStore) error {
			got, err := s.Domain(ctx, "acme.test")
			if owner == "" {
				if !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("Domain = %+v, %v; want ErrNotFound", got, err)
				}
				return nil
			}
			if err != nil || got.Tenant != owner {
				return fmt.Errorf("Domain = %+v, %v; want owner %s", got, err, owner)
			}
			return nil
		}
	}
	keysAre := func(states ...string) func(*DBStore) error {
		return func(s *DBStore) error {
			got, err := s.Keys(ctx, "acme.test")
			if err != nil || len(got) != len(states) {
				return fmt.Errorf("Keys = %d keys, %v; want %d", len(got), err, len(states))
			}
			for i, k := range got {
				if k.State != states[i] {
					return fmt.Errorf("key %s is %s, want %s", k.Selector, k.State, states[i])
				}
			}
			// Each caller gets its own slice.
			if len(got) > 0 {
				got[0].State = "scribbled"
			}
			return nil
		}
	}
	must(w.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "acme", CreatedAt: now},
		DKIMKey{Domain: "acme.test", Selector: "s1", Algorithm: "rsa-sha256", State: KeyActive, CreatedAt: now}))
	read("domain added", domainOwner("acme"))
	read("domain added", keysAre(KeyActive))
	served("domain added", CacheDomain, "acme.test")
	served("domain added", CacheKeys, "acme.test")
	must(w.PutKey(ctx, DKIMKey{Domain: "acme.test", Selector: "s2", Algorithm: "rsa-sha256", State: KeyPublished, CreatedAt: now.Add(time.Second)}))
	read("key added", keysAre(KeyActive, KeyPublished))
	must(w.ActivateKey(ctx, "acme.test", "s2", now))
	read("key activated", keysAre(KeyRetired, KeyActive))
	must(w.DeleteKey(ctx, "acme.test", "s1"))
	read("key deleted", keysAre(KeyActive))
	must(w.DeleteDomain(ctx, "acme", "acme.test"))
	read("domain deleted", domainOwner(""))
	read("domain deleted", keysAre())
	must(w.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "other", CreatedAt: now}))
	read("domain taken by another tenant", domainOwner("other"))

	must(w.DeleteTenant(ctx, "other"))
	read("owner deleted", domainOwner(""))
	must(w.DeleteTenant(ctx, "acme"))
	read("tenant deleted", func(s *DBStore) error {
		if got, err := s.Tenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("Tenant = %+v, %v; want ErrNotFound", got, err)
		}
		if got, err := s.List(ctx, "acme", "news"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("List = %+v, %v; want ErrNotFound", got, err)
		}
		return nil
	})
}

// TestReadsRacingWrites: readers busy on the cached records while a writer
// changes them; once a write has returned, no read started after it sees
// an older value (run with -race).
func TestReadsRacingWrites(t *testing.T) { eachBackend(t, testReadsRacingWrites) }

func testReadsRacingWrites(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t)
	if err := s.CreateTenant(ctx, Tenant{ID: "acme", Name: "v0"}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Tenant(ctx, "acme"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 200; i++ {
		want := fmt.Sprintf("v%d", i)
		if err := s.UpdateTenant(ctx, Tenant{ID: "acme", Name: want}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Tenant(ctx, "acme"); err != nil || got.Name != want {
			t.Fatalf("after write %d: Tenant = %q, %v; want %q", i, got.Name, err, want)
		}
	}
	close(stop)
	wg.Wait()
}
