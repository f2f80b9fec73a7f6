package tenant

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/heedmail/heed/internal/store"
	bolt "go.etcd.io/bbolt"
)

// BoltStore is the bbolt implementation of Store.
//
// Layout: tenants id→Tenant; credentials tenant\0id→Credential;
// credential_usernames "u:"+username→tenant\0id and "n:"+cidr→tenant\0id;
// domains name→Domain; lists tenant\0id→List; dkim_keys
// domain\0selector→DKIMKey.
//
// Tenant, Domain, List and Keys, which every message reads, are served from
// an exact in-memory cache that every write invalidates (cache.go).
type BoltStore struct {
	db    *store.DB
	cache *readCache
}

// NewBoltStore returns the registry kept in db.
func NewBoltStore(db *store.DB) *BoltStore { return &BoltStore{db: db, cache: cacheFor(db)} }

// update runs fn in a write transaction that makes the read cache stale
// when it commits. A commit that fails after bbolt wrote its meta page (an
// fdatasync error) may still be what new readers see, and its commit
// handlers never run: a failed update makes the cache stale too.
func (s *BoltStore) update(fn func(tx *bolt.Tx) error) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		tx.OnCommit(s.cache.invalidate)
		return fn(tx)
	})
	if err != nil {
		s.cache.invalidate()
	}
	return err
}

var _ Store = (*BoltStore)(nil)

func key(tenant, id string) []byte { return []byte(tenant + "\x00" + id) }

func prefix(tenant string) []byte { return []byte(tenant + "\x00") }

func get[T any](b *bolt.Bucket, k []byte) (T, error) {
	var v T
	raw := b.Get(k)
	if raw == nil {
		return v, ErrNotFound
	}
	return v, json.Unmarshal(raw, &v)
}

func put(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func scan[T any](b *bolt.Bucket, pfx []byte) ([]T, error) {
	var out []T
	c := b.Cursor()
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// CreateTenant stores t and its default lists.
func (s *BoltStore) CreateTenant(_ context.Context, t Tenant) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketTenants)
		if b.Get([]byte(t.ID)) != nil {
			return ErrExists
		}
		for _, l := range DefaultLists {
			l.Tenant, l.CreatedAt = t.ID, t.CreatedAt
			if err := put(tx.Bucket(store.BucketLists), key(t.ID, l.ID), l); err != nil {
				return err
			}
		}
		return put(b, []byte(t.ID), t)
	})
}

func (s *BoltStore) Tenant(_ context.Context, id string) (Tenant, error) {
	return cachedGet[Tenant](s, cacheTenant, store.BucketTenants, []byte(id))
}

// cachedGet returns the record at k in bucket, through the read cache.
func cachedGet[T any](s *BoltStore, kind cacheKind, bucket, k []byte) (T, error) {
	return cached(s.cache, cacheKey{kind, string(k)}, func() (v T, err error) {
		err = s.db.View(func(tx *bolt.Tx) error {
			v, err = get[T](tx.Bucket(bucket), k)
			return err
		})
		return v, err
	})
}

func (s *BoltStore) Tenants(_ context.Context) (ts []Tenant, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ts, err = scan[Tenant](tx.Bucket(store.BucketTenants), nil)
		return err
	})
	return ts, err
}

func (s *BoltStore) UpdateTenant(_ context.Context, t Tenant) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketTenants)
		if b.Get([]byte(t.ID)) == nil {
			return ErrNotFound
		}
		return put(b, []byte(t.ID), t)
	})
}

func (s *BoltStore) DeleteTenant(_ context.Context, id string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketTenants)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		creds, err := scan[Credential](tx.Bucket(store.BucketCredentials), prefix(id))
		if err != nil {
			return err
		}
		for _, c := range creds {
			if err := deleteCredential(tx, c); err != nil {
				return err
			}
		}
		doms := tx.Bucket(store.BucketDomains)
		var names [][]byte
		err = doms.ForEach(func(k, v []byte) error {
			var d Domain
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if d.Tenant == id {
				names = append(names, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range names {
			if err := doms.Delete(k); err != nil {
				return err
			}
			if err := deletePrefix(tx.Bucket(store.BucketDKIMKeys), append(k, 0)); err != nil {
				return err
			}
		}
		if err := deletePrefix(tx.Bucket(store.BucketLists), prefix(id)); err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
}

func deletePrefix(b *bolt.Bucket, pfx []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Seek(pfx) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func usernameKey(u string) []byte      { return []byte("u:" + u) }
func networkKey(p netip.Prefix) []byte { return []byte("n:" + p.String()) }
func apiKeyKey(id string) []byte       { return []byte("k:" + id) }

// credentialIndexKey is a credential's entry in the index: SMTP usernames,
// ip networks and API key ids each have a prefix of their own, so an API
// key is never an SMTP login and the reverse.
func credentialIndexKey(c Credential) []byte {
	switch c.Kind {
	case KindIP:
		return networkKey(c.Network)
	case KindAPIKey:
		return apiKeyKey(c.ID)
	}
	return usernameKey(c.Username)
}

// CreateCredential stores c. An ip credential whose network overlaps
// another tenant's is refused with ErrExists.
func (s *BoltStore) CreateCredential(_ context.Context, c Credential) error {
	return s.createCredential(c, 0)
}

// CreateIPCredential implements Store.
func (s *BoltStore) CreateIPCredential(_ context.Context, c Credential, max int) error {
	if c.Kind != KindIP {
		return fmt.Errorf("CreateIPCredential of a %s credential", c.Kind)
	}
	return s.createCredential(c, max)
}

// createCredential stores c; an ip credential only while its tenant holds
// fewer than maxIP (0: any number), counted in the transaction that adds
// it, so that requests at once cannot pass the limit together.
func (s *BoltStore) createCredential(c Credential, maxIP int) error {
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketTenants).Get([]byte(c.Tenant)) == nil {
			return ErrNotFound
		}
		idx := tx.Bucket(store.BucketUsernames)
		if c.Kind == KindIP {
			if err := checkIPCount(tx, c.Tenant, maxIP); err != nil {
				return err
			}
			if err := checkOverlap(idx, c); err != nil {
				return err
			}
		}
		ik := credentialIndexKey(c)
		if c.Kind != KindIP && idx.Get(ik) != nil {
			return ErrExists
		}
		if err := idx.Put(ik, key(c.Tenant, c.ID)); err != nil {
			return err
		}
		return put(tx.Bucket(store.BucketCredentials), key(c.Tenant, c.ID), c)
	})
}

// checkIPCount refuses another ip credential of tenant once it holds max.
func checkIPCount(tx *bolt.Tx, tenant string, max int) error {
	if max <= 0 {
		return nil
	}
	pfx, n := prefix(tenant), 0
	cur := tx.Bucket(store.BucketCredentials).Cursor()
	for k, v := cur.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = cur.Next() {
		var c struct{ Kind string }
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("%q: %w", k, err)
		}
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
// creating credentials is rare, and the write lock is held for a scan.
func checkOverlap(idx *bolt.Bucket, c Credential) error {
	want := canonical(c.Network)
	c2 := idx.Cursor()
	for k, v := c2.Seek([]byte("n:")); k != nil && bytes.HasPrefix(k, []byte("n:")); k, v = c2.Next() {
		p, err := netip.ParsePrefix(string(k[2:]))
		if err != nil {
			return err
		}
		owner, _, _ := bytes.Cut(v, []byte{0})
		if p = canonical(p); broadest(p) {
			continue // matches nobody (CredentialForAddr), so it blocks nobody
		}
		if p.Overlaps(want) && string(owner) != c.Tenant {
			return fmt.Errorf("%w: cidr %s overlaps a network already registered to another tenant", ErrExists, c.Network)
		}
	}
	return nil
}

func (s *BoltStore) Credentials(_ context.Context, tenant string) (cs []Credential, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		cs, err = scan[Credential](tx.Bucket(store.BucketCredentials), prefix(tenant))
		return err
	})
	return cs, err
}

func (s *BoltStore) DeleteCredential(_ context.Context, tenant, id string) error {
	return s.update(func(tx *bolt.Tx) error {
		c, err := get[Credential](tx.Bucket(store.BucketCredentials), key(tenant, id))
		if err != nil {
			return err
		}
		return deleteCredential(tx, c)
	})
}

func deleteCredential(tx *bolt.Tx, c Credential) error {
	idx := tx.Bucket(store.BucketUsernames)
	ik := credentialIndexKey(c)
	// Two credentials of one tenant may name the same network; only drop the
	// index entry that points at this one.
	if bytes.Equal(idx.Get(ik), key(c.Tenant, c.ID)) {
		if err := idx.Delete(ik); err != nil {
			return err
		}
	}
	return tx.Bucket(store.BucketCredentials).Delete(key(c.Tenant, c.ID))
}

func (s *BoltStore) CredentialByUsername(_ context.Context, username string) (c Credential, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ref := tx.Bucket(store.BucketUsernames).Get(usernameKey(username))
		if ref == nil {
			return ErrNotFound
		}
		c, err = get[Credential](tx.Bucket(store.BucketCredentials), ref)
		return err
	})
	return c, err
}

// APIKey implements Store.
func (s *BoltStore) APIKey(_ context.Context, id string) (c Credential, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ref := tx.Bucket(store.BucketUsernames).Get(apiKeyKey(id))
		if ref == nil {
			return ErrNotFound
		}
		c, err = get[Credential](tx.Bucket(store.BucketCredentials), ref)
		return err
	})
	return c, err
}

// CredentialForAddr returns the credential with the most specific network
// holding addr, through the network index (netindex.go). Addresses and
// networks are compared unmapped (an IPv4 client on a dual-stack socket
// is ::ffff:a.b.c.d); a network broader than any limit allows, registered
// before there were limits, matches nothing rather than let the whole
// internet in.
func (s *BoltStore) CredentialForAddr(_ context.Context, addr netip.Addr) (c Credential, err error) {
	x, err := cached(s.cache, cacheKey{cacheNetworks, ""}, func() (x *netIndex, err error) {
		err = s.db.View(func(tx *bolt.Tx) error {
			x, err = buildNetIndex(tx)
			return err
		})
		return x, err
	})
	if err != nil {
		return Credential{}, err
	}
	ref := x.lookup(addr.Unmap())
	if ref == nil {
		return Credential{}, ErrNotFound
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		c, err = get[Credential](tx.Bucket(store.BucketCredentials), ref)
		return err
	})
	return c, err
}

// AddDomain stores d; a domain already owned by any tenant is ErrExists.
func (s *BoltStore) AddDomain(_ context.Context, d Domain, keys ...DKIMKey) error {
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketTenants).Get([]byte(d.Tenant)) == nil {
			return ErrNotFound
		}
		b := tx.Bucket(store.BucketDomains)
		if b.Get([]byte(d.Name)) != nil {
			return ErrExists
		}
		// Keys left by an earlier owner of the name must not sign for
		// the new one.
		if err := deletePrefix(tx.Bucket(store.BucketDKIMKeys), prefix(d.Name)); err != nil {
			return err
		}
		for _, k := range keys {
			if k.Domain != d.Name {
				return fmt.Errorf("key %s is not for domain %s", k.Selector, d.Name)
			}
			if err := put(tx.Bucket(store.BucketDKIMKeys), key(d.Name, k.Selector), k); err != nil {
				return err
			}
		}
		return put(b, []byte(d.Name), d)
	})
}

func (s *BoltStore) Domain(_ context.Context, name string) (Domain, error) {
	return cachedGet[Domain](s, cacheDomain, store.BucketDomains, []byte(name))
}

func (s *BoltStore) Domains(_ context.Context, tenant string) (ds []Domain, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		all, err := scan[Domain](tx.Bucket(store.BucketDomains), nil)
		for _, d := range all {
			if d.Tenant == tenant {
				ds = append(ds, d)
			}
		}
		return err
	})
	return ds, err
}

func (s *BoltStore) DeleteDomain(_ context.Context, tenant, name string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketDomains)
		d, err := get[Domain](b, []byte(name))
		if err != nil {
			return err
		}
		if d.Tenant != tenant {
			return ErrNotFound
		}
		if err := deletePrefix(tx.Bucket(store.BucketDKIMKeys), prefix(name)); err != nil {
			return err
		}
		return b.Delete([]byte(name))
	})
}

func (s *BoltStore) PutList(_ context.Context, l List) error {
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketTenants).Get([]byte(l.Tenant)) == nil {
			return ErrNotFound
		}
		b := tx.Bucket(store.BucketLists)
		if old, err := get[List](b, key(l.Tenant, l.ID)); err == nil {
			l.CreatedAt = old.CreatedAt
		}
		return put(b, key(l.Tenant, l.ID), l)
	})
}

func (s *BoltStore) List(_ context.Context, tenant, id string) (List, error) {
	return cachedGet[List](s, cacheList, store.BucketLists, key(tenant, id))
}

func (s *BoltStore) Lists(_ context.Context, tenant string) (ls []List, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		ls, err = scan[List](tx.Bucket(store.BucketLists), prefix(tenant))
		return err
	})
	return ls, err
}

// PutKey implements Store.
func (s *BoltStore) PutKey(_ context.Context, k DKIMKey) error {
	return s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketDomains).Get([]byte(k.Domain)) == nil {
			return ErrNotFound
		}
		return put(tx.Bucket(store.BucketDKIMKeys), key(k.Domain, k.Selector), k)
	})
}

// Keys implements Store.
func (s *BoltStore) Keys(_ context.Context, domain string) ([]DKIMKey, error) {
	ks, err := cached(s.cache, cacheKey{cacheKeys, domain}, func() (ks []DKIMKey, err error) {
		err = s.db.View(func(tx *bolt.Tx) error {
			ks, err = scan[DKIMKey](tx.Bucket(store.BucketDKIMKeys), prefix(domain))
			return err
		})
		sort.SliceStable(ks, func(i, j int) bool { return ks[i].CreatedAt.Before(ks[j].CreatedAt) })
		return ks, err
	})
	// The cached slice is shared: callers get their own copy of it (the
	// keys' Sealed bytes are still shared, and must not be written to).
	return slices.Clone(ks), err
}

// ActivateKey implements Store.
func (s *BoltStore) ActivateKey(_ context.Context, domain, selector string, at time.Time) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketDKIMKeys)
		k, err := get[DKIMKey](b, key(domain, selector))
		if err != nil {
			return err
		}
		all, err := scan[DKIMKey](b, prefix(domain))
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Selector != selector && o.Algorithm == k.Algorithm && o.State == KeyActive {
				o.State, o.RetiredAt = KeyRetired, at
				if err := put(b, key(domain, o.Selector), o); err != nil {
					return err
				}
			}
		}
		if k.State != KeyActive {
			k.State, k.ActivatedAt, k.RetiredAt = KeyActive, at, time.Time{}
		}
		return put(b, key(domain, selector), k)
	})
}

// DeleteKey implements Store.
func (s *BoltStore) DeleteKey(_ context.Context, domain, selector string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketDKIMKeys)
		k, err := get[DKIMKey](b, key(domain, selector))
		if err != nil {
			return err
		}
		if k.State == KeyActive {
			return ErrActiveKey
		}
		return b.Delete(key(domain, selector))
	})
}
