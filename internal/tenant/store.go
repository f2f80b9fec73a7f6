package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/heedmail/heed/internal/txn"
)

// DBStore is the Store over a storage backend's transactions (Rows):
// every rule of the registry is here, written once for bbolt and
// PostgreSQL. Each write is one transaction, so what must hold together
// (a tenant and its default lists, a domain and its first keys, a
// rotation, an ip credential and the checks it passed) does.
//
// Tenant, Domain, List and Keys, which every message reads, and the ip
// networks every session without AUTH is matched against, are served
// from an exact in-memory cache that every write through a DBStore over
// the same Cache invalidates (cache.go).
type DBStore struct {
	tx    txn.Runner[Rows]
	cache *Cache
}

var _ Store = (*DBStore)(nil)

// NewDBStore returns the registry kept by tx. Every DBStore over one
// database must share cache (NewCache), and only they may write the
// registry's rows: a write that does not go through one of them is not
// seen by the others' lookups until their next write.
func NewDBStore(tx txn.Runner[Rows], cache *Cache) *DBStore {
	return &DBStore{tx: tx, cache: cache}
}

// update runs fn in a write transaction and then makes the read cache
// stale, before the writer hears of the write. A commit that fails may
// still be what new readers see (bbolt's fdatasync error after its meta
// page, PostgreSQL's connection lost during COMMIT): a failed update
// makes the cache stale too. Under a txn.Join the write commits with the
// joined transaction, so the cache goes stale when that one ends.
func (s *DBStore) update(ctx context.Context, fn func(Rows) error) error {
	err := s.tx.Update(ctx, fn)
	txn.AfterCommit(ctx, s.cache.Invalidate)
	return err
}

func (s *DBStore) view(ctx context.Context, fn func(Rows) error) error { return s.tx.View(ctx, fn) }

// CreateTenant stores t and its default lists.
func (s *DBStore) CreateTenant(ctx context.Context, t Tenant) error {
	return s.update(ctx, func(r Rows) error {
		if err := absent(r.Tenant(t.ID)); err != nil {
			return err
		}
		for _, l := range DefaultLists {
			l.Tenant, l.CreatedAt = t.ID, t.CreatedAt
			if err := r.PutList(l); err != nil {
				return err
			}
		}
		return r.PutTenant(t)
	})
}

// absent turns the result of looking a record up into ErrExists when it
// is there, nil when it is not.
func absent[T any](_ T, err error) error {
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, ErrNotFound):
		return nil
	}
	return err
}

// Tenant implements Store, through the read cache.
func (s *DBStore) Tenant(ctx context.Context, id string) (Tenant, error) {
	if !possibleID(id) {
		return Tenant{}, ErrNotFound
	}
	return cachedView(ctx, s, cacheKey{cacheTenant, id}, func(r Rows) (Tenant, error) { return r.Tenant(id) })
}

// possibleID reports whether a key that came from outside (an AUTH
// username, an X-Heed-List header, a path) could name a stored record: ids
// are checked by ValidID when they are made, so one that fails it names
// nothing, and the lookup answers ErrNotFound without asking the backend.
// That keeps both backends' answers alike: PostgreSQL refuses a NUL or
// bytes that are not UTF-8 in a text parameter (SQLSTATE 22021), which
// would turn "no such user" into a database error.
func possibleID(s string) bool { return ValidID(s) == nil }

// cachedView returns the value of k through the read cache, reading it
// with load in a read transaction when the cache has no current copy.
// Inside a joined transaction (txn.Join) the cache is bypassed: the read
// must see the transaction's own writes, and must not be kept, since they
// may never commit.
func cachedView[T any](ctx context.Context, s *DBStore, k cacheKey, load func(Rows) (T, error)) (T, error) {
	if txn.Joining(ctx) {
		return viewed(ctx, s, load)
	}
	return cached(s.cache, k, func() (v T, err error) {
		err = s.view(ctx, func(r Rows) error {
			v, err = load(r)
			return err
		})
		return v, err
	})
}

// viewed returns what load reads in a read transaction.
func viewed[T any](ctx context.Context, s *DBStore, load func(Rows) (T, error)) (v T, err error) {
	err = s.view(ctx, func(r Rows) error {
		v, err = load(r)
		return err
	})
	return v, err
}

// viewedOne is viewed for a load that is one query (txn.ViewOne).
func viewedOne[T any](ctx context.Context, s *DBStore, load func(Rows) (T, error)) (v T, err error) {
	err = txn.ViewOne(ctx, s.tx, func(r Rows) error {
		v, err = load(r)
		return err
	})
	return v, err
}

// Tenants implements Store.
func (s *DBStore) Tenants(ctx context.Context) ([]Tenant, error) {
	return viewed(ctx, s, Rows.Tenants)
}

// UpdateTenant implements Store.
func (s *DBStore) UpdateTenant(ctx context.Context, t Tenant) error {
	return s.update(ctx, func(r Rows) error {
		if _, err := r.Tenant(t.ID); err != nil {
			return err
		}
		return r.PutTenant(t)
	})
}

// DeleteTenant removes the tenant, its credentials (with their
// usernames, API keys and networks), its domains with their DKIM keys
// and its lists, in one transaction. Its events, suppressions, messages
// and webhooks are their stores' to delete.
func (s *DBStore) DeleteTenant(ctx context.Context, id string) error {
	return s.update(ctx, func(r Rows) error {
		if _, err := r.Tenant(id); err != nil {
			return err
		}
		creds, err := r.Credentials(id)
		if err != nil {
			return err
		}
		for _, c := range creds {
			if err := r.DeleteCredential(c); err != nil {
				return err
			}
		}
		doms, err := r.Domains(id)
		if err != nil {
			return err
		}
		for _, d := range doms {
			if err := r.DeleteDomain(d.Name); err != nil {
				return err
			}
			if err := r.DeleteKeys(d.Name); err != nil {
				return err
			}
		}
		if err := r.DeleteLists(id); err != nil {
			return err
		}
		return r.DeleteTenant(id)
	})
}

// CreateCredential stores c. A username or API key id already taken is
// ErrExists; so is an ip credential whose network overlaps another
// tenant's.
func (s *DBStore) CreateCredential(ctx context.Context, c Credential) error {
	return s.createCredential(ctx, c, 0)
}

// CreateIPCredential implements Store.
func (s *DBStore) CreateIPCredential(ctx context.Context, c Credential, max int) error {
	if c.Kind != KindIP {
		return fmt.Errorf("CreateIPCredential of a %s credential", c.Kind)
	}
	return s.createCredential(ctx, c, max)
}

// createCredential stores c; an ip credential only while its tenant holds
// fewer than maxIP (0: any number) and no other tenant's network overlaps
// it, both checked in the transaction that adds it, so that requests at
// once cannot pass the limit or claim overlapping networks together (on
// PostgreSQL, SERIALIZABLE makes one of two such transactions fail and
// run again, when it sees the other's network).
func (s *DBStore) createCredential(ctx context.Context, c Credential, maxIP int) error {
	return s.update(ctx, func(r Rows) error {
		if _, err := r.Tenant(c.Tenant); err != nil {
			return err
		}
		switch c.Kind {
		case KindIP:
			if err := checkIPCount(r, c.Tenant, maxIP); err != nil {
				return err
			}
			if err := checkOverlap(r, c); err != nil {
				return err
			}
		case KindAPIKey:
			if err := absent(r.APIKey(c.ID)); err != nil {
				return err
			}
		default:
			if err := absent(r.CredentialByUsername(c.Username)); err != nil {
				return err
			}
		}
		return r.PutCredential(c)
	})
}

// checkIPCount refuses another ip credential of tenant once it holds max.
func checkIPCount(r Rows, tenant string, max int) error {
	if max <= 0 {
		return nil
	}
	cs, err := r.Credentials(tenant)
	if err != nil {
		return err
	}
	n := 0
	for _, c := range cs {
		if c.Kind == KindIP {
			n++
		}
	}
	if n >= max {
		return fmt.Errorf("%w: tenant %q holds %d ip credentials, the most it may have", ErrTooManyNetworks, tenant, n)
	}
	return nil
}

// checkOverlap refuses c's network when it overlaps another tenant's.
// The refusal names neither the other network nor its tenant, but the
// refusal itself says that some other tenant holds a network there, and
// by halving a refused network a key holder finds another tenant's exact
// network in a few requests: exclusive networks cannot help answering
// that. A tenant key can only ask about public networks of a /24 or /56
// at most and hold MaxTenantIPCredentials of them (what it finds free it
// must register, then delete), and the admin API logs and audits every
// refusal, so probing is bounded and seen rather than prevented.
// Networks are compared in their canonical form, so that
// ::ffff:198.51.100.0/120 meets 198.51.100.0/24. Every network is read:
// creating credentials is rare, and the write transaction is held for a
// scan.
func checkOverlap(r Rows, c Credential) error {
	want := canonical(c.Network)
	nets, err := r.Networks()
	if err != nil {
		return err
	}
	for _, n := range nets {
		p := canonical(n.Network)
		if broadest(p) {
			continue // matches nobody (CredentialForAddr), so it blocks nobody
		}
		if p.Overlaps(want) && n.Tenant != c.Tenant {
			return fmt.Errorf("%w: cidr %s overlaps a network already registered to another tenant", ErrExists, c.Network)
		}
	}
	return nil
}

// Credentials implements Store.
func (s *DBStore) Credentials(ctx context.Context, tenant string) ([]Credential, error) {
	return viewed(ctx, s, func(r Rows) ([]Credential, error) { return r.Credentials(tenant) })
}

// DeleteCredential implements Store.
func (s *DBStore) DeleteCredential(ctx context.Context, tenant, id string) error {
	if !possibleID(tenant) || !possibleID(id) {
		return ErrNotFound
	}
	return s.update(ctx, func(r Rows) error {
		c, err := r.Credential(tenant, id)
		if err != nil {
			return err
		}
		return r.DeleteCredential(c)
	})
}

// CredentialByUsername implements Store. The secret is compared by the
// Registry, in constant time.
func (s *DBStore) CredentialByUsername(ctx context.Context, username string) (Credential, error) {
	if !possibleID(username) {
		// A username is the credential's id (CreatePassword): whatever
		// else a client sends under AUTH is an unknown username.
		return Credential{}, ErrNotFound
	}
	// Every AUTH: one query, no transaction around it (txn.ViewOne).
	return viewedOne(ctx, s, func(r Rows) (Credential, error) { return r.CredentialByUsername(username) })
}

// APIKey implements Store.
func (s *DBStore) APIKey(ctx context.Context, id string) (Credential, error) {
	if !possibleID(id) {
		return Credential{}, ErrNotFound
	}
	// Every API call: one query, as CredentialByUsername.
	return viewedOne(ctx, s, func(r Rows) (Credential, error) { return r.APIKey(id) })
}

// CredentialForAddr returns the credential with the most specific network
// holding addr, through the network index (netindex.go). Addresses and
// networks are compared unmapped (an IPv4 client on a dual-stack socket
// is ::ffff:a.b.c.d); a network broader than any limit allows, registered
// before there were limits, matches nothing rather than let the whole
// internet in.
func (s *DBStore) CredentialForAddr(ctx context.Context, addr netip.Addr) (Credential, error) {
	x, err := cachedView(ctx, s, cacheKey{cacheNetworks, ""}, func(r Rows) (*netIndex, error) {
		nets, err := r.Networks()
		if err != nil {
			return nil, err
		}
		return buildNetIndex(nets), nil
	})
	if err != nil {
		return Credential{}, err
	}
	ref, ok := x.lookup(addr.Unmap())
	if !ok {
		return Credential{}, ErrNotFound
	}
	return viewed(ctx, s, func(r Rows) (Credential, error) { return r.Credential(ref.Tenant, ref.ID) })
}

// AddDomain stores d; a domain already owned by any tenant is ErrExists.
func (s *DBStore) AddDomain(ctx context.Context, d Domain, keys ...DKIMKey) error {
	return s.update(ctx, func(r Rows) error {
		if _, err := r.Tenant(d.Tenant); err != nil {
			return err
		}
		if err := absent(r.Domain(d.Name)); err != nil {
			return err
		}
		// Keys left by an earlier owner of the name must not sign for
		// the new one.
		if err := r.DeleteKeys(d.Name); err != nil {
			return err
		}
		for _, k := range keys {
			if k.Domain != d.Name {
				return fmt.Errorf("key %s is not for domain %s", k.Selector, d.Name)
			}
			if err := r.PutKey(k); err != nil {
				return err
			}
		}
		return r.PutDomain(d)
	})
}

// Domain implements Store, through the read cache.
func (s *DBStore) Domain(ctx context.Context, name string) (Domain, error) {
	if n, err := NormalizeDomain(name); err != nil || n != name {
		return Domain{}, ErrNotFound // every stored name is normalised
	}
	return cachedView(ctx, s, cacheKey{cacheDomain, name}, func(r Rows) (Domain, error) { return r.Domain(name) })
}

// Domains implements Store.
func (s *DBStore) Domains(ctx context.Context, tenant string) ([]Domain, error) {
	return viewed(ctx, s, func(r Rows) ([]Domain, error) { return r.Domains(tenant) })
}

// DeleteDomain implements Store: another tenant's domain is ErrNotFound.
func (s *DBStore) DeleteDomain(ctx context.Context, tenant, name string) error {
	return s.update(ctx, func(r Rows) error {
		d, err := r.Domain(name)
		if err != nil {
			return err
		}
		if d.Tenant != tenant {
			return ErrNotFound
		}
		if err := r.DeleteKeys(name); err != nil {
			return err
		}
		return r.DeleteDomain(name)
	})
}

// PutList implements Store; a list keeps the time it was first created.
func (s *DBStore) PutList(ctx context.Context, l List) error {
	return s.update(ctx, func(r Rows) error {
		if _, err := r.Tenant(l.Tenant); err != nil {
			return err
		}
		if old, err := r.List(l.Tenant, l.ID); err == nil {
			l.CreatedAt = old.CreatedAt
		}
		return r.PutList(l)
	})
}

// List implements Store, through the read cache.
func (s *DBStore) List(ctx context.Context, tenant, id string) (List, error) {
	if !possibleID(tenant) || !possibleID(id) {
		return List{}, ErrNotFound
	}
	return cachedView(ctx, s, cacheKey{cacheList, tenant + "\x00" + id}, func(r Rows) (List, error) { return r.List(tenant, id) })
}

// Lists implements Store.
func (s *DBStore) Lists(ctx context.Context, tenant string) ([]List, error) {
	return viewed(ctx, s, func(r Rows) ([]List, error) { return r.Lists(tenant) })
}

// PutKey implements Store.
func (s *DBStore) PutKey(ctx context.Context, k DKIMKey) error {
	return s.update(ctx, func(r Rows) error {
		if _, err := r.Domain(k.Domain); err != nil {
			return err
		}
		return r.PutKey(k)
	})
}

// Keys implements Store, through the read cache.
func (s *DBStore) Keys(ctx context.Context, domain string) ([]DKIMKey, error) {
	ks, err := cachedView(ctx, s, cacheKey{cacheKeys, domain}, func(r Rows) ([]DKIMKey, error) {
		ks, err := r.Keys(domain)
		sort.SliceStable(ks, func(i, j int) bool { return ks[i].CreatedAt.Before(ks[j].CreatedAt) })
		return ks, err
	})
	// The cached slice is shared: callers get their own copy of it (the
	// keys' Sealed bytes are still shared, and must not be written to).
	return slices.Clone(ks), err
}

// ActivateKey implements Store.
func (s *DBStore) ActivateKey(ctx context.Context, domain, selector string, at time.Time) error {
	return s.update(ctx, func(r Rows) error {
		all, err := r.Keys(domain)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(all, func(k DKIMKey) bool { return k.Selector == selector })
		if i < 0 {
			return ErrNotFound
		}
		k := all[i]
		for _, o := range all {
			if o.Selector != selector && o.Algorithm == k.Algorithm && o.State == KeyActive {
				o.State, o.RetiredAt = KeyRetired, at
				if err := r.PutKey(o); err != nil {
					return err
				}
			}
		}
		if k.State != KeyActive {
			k.State, k.ActivatedAt, k.RetiredAt = KeyActive, at, time.Time{}
		}
		return r.PutKey(k)
	})
}

// DeleteKey implements Store.
func (s *DBStore) DeleteKey(ctx context.Context, domain, selector string) error {
	return s.update(ctx, func(r Rows) error {
		all, err := r.Keys(domain)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(all, func(k DKIMKey) bool { return k.Selector == selector })
		switch {
		case i < 0:
			return ErrNotFound
		case all[i].State == KeyActive:
			return ErrActiveKey
		}
		return r.DeleteKey(domain, selector)
	})
}
