package boltdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
)

// tenantRows is tenant.Rows in bbolt, in the layout internal/tenant's
// BoltStore wrote (no data migration); values are the records' JSON:
//
//	tenants               id → Tenant
//	credentials           tenant 0x00 id → Credential
//	credential_usernames  "u:" username → tenant 0x00 id (password credentials)
//	                      "k:" id → tenant 0x00 id (API keys)
//	                      "n:" network → tenant 0x00 id (ip credentials)
//	domains               name → Domain
//	lists                 tenant 0x00 id → List
//	dkim_keys             domain 0x00 selector → DKIMKey
//
// Usernames, API key ids and networks have a prefix each in the index, so
// an API key is never an SMTP login and the reverse. Ids, names and
// selectors hold no 0x00 (tenant.ValidID, NormalizeDomain, dkim selectors),
// so the separator is unambiguous.
type tenantRows struct{ tx *bolt.Tx }

func (r tenantRows) bucket(name []byte) *bolt.Bucket { return r.tx.Bucket(name) }

func registryKey(a, b string) []byte { return []byte(a + "\x00" + b) }

func registryKeyPrefix(a string) []byte { return []byte(a + "\x00") }

func registryGet[T any](b *bolt.Bucket, k []byte) (T, error) {
	var v T
	raw := b.Get(k)
	if raw == nil {
		return v, tenant.ErrNotFound
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("%q: %w", k, err)
	}
	return v, nil
}

func registryScan[T any](b *bolt.Bucket, pfx []byte) ([]T, error) {
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

func (r tenantRows) Tenant(id string) (tenant.Tenant, error) {
	return registryGet[tenant.Tenant](r.bucket(store.BucketTenants), []byte(id))
}

func (r tenantRows) Tenants() ([]tenant.Tenant, error) {
	return registryScan[tenant.Tenant](r.bucket(store.BucketTenants), nil)
}

func (r tenantRows) PutTenant(t tenant.Tenant) error {
	return putJSON(r.bucket(store.BucketTenants), []byte(t.ID), t)
}

func (r tenantRows) DeleteTenant(id string) error {
	return r.bucket(store.BucketTenants).Delete([]byte(id))
}

// credentialIndexKey is a credential's entry in the index.
func credentialIndexKey(c tenant.Credential) []byte {
	switch c.Kind {
	case tenant.KindIP:
		return []byte("n:" + c.Network.String())
	case tenant.KindAPIKey:
		return []byte("k:" + c.ID)
	}
	return []byte("u:" + c.Username)
}

func (r tenantRows) Credential(tenantID, id string) (tenant.Credential, error) {
	return registryGet[tenant.Credential](r.bucket(store.BucketCredentials), registryKey(tenantID, id))
}

func (r tenantRows) Credentials(tenantID string) ([]tenant.Credential, error) {
	return registryScan[tenant.Credential](r.bucket(store.BucketCredentials), registryKeyPrefix(tenantID))
}

// byIndex returns the credential the index entry ik points at.
func (r tenantRows) byIndex(ik []byte) (tenant.Credential, error) {
	ref := r.bucket(store.BucketUsernames).Get(ik)
	if ref == nil {
		return tenant.Credential{}, tenant.ErrNotFound
	}
	return registryGet[tenant.Credential](r.bucket(store.BucketCredentials), ref)
}

func (r tenantRows) CredentialByUsername(username string) (tenant.Credential, error) {
	return r.byIndex([]byte("u:" + username))
}

func (r tenantRows) APIKey(id string) (tenant.Credential, error) {
	return r.byIndex([]byte("k:" + id))
}

func (r tenantRows) Networks() ([]tenant.NetworkRef, error) {
	var out []tenant.NetworkRef
	pfx := []byte("n:")
	c := r.bucket(store.BucketUsernames).Cursor()
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		p, err := netip.ParsePrefix(string(k[len(pfx):]))
		if err != nil {
			return nil, fmt.Errorf("credential index %q: %w", k, err)
		}
		owner, id, _ := bytes.Cut(v, []byte{0})
		out = append(out, tenant.NetworkRef{Network: p, Tenant: string(owner), ID: string(id)})
	}
	return out, nil
}

// PutCredential implements tenant.Rows. Two credentials of one tenant may
// name the same network: the index entry points at the later one.
func (r tenantRows) PutCredential(c tenant.Credential) error {
	if err := r.bucket(store.BucketUsernames).Put(credentialIndexKey(c), registryKey(c.Tenant, c.ID)); err != nil {
		return err
	}
	return putJSON(r.bucket(store.BucketCredentials), registryKey(c.Tenant, c.ID), c)
}

func (r tenantRows) DeleteCredential(c tenant.Credential) error {
	idx := r.bucket(store.BucketUsernames)
	ik := credentialIndexKey(c)
	// Only drop the index entry if it points at this credential (see
	// PutCredential).
	if bytes.Equal(idx.Get(ik), registryKey(c.Tenant, c.ID)) {
		if err := idx.Delete(ik); err != nil {
			return err
		}
	}
	return r.bucket(store.BucketCredentials).Delete(registryKey(c.Tenant, c.ID))
}

func (r tenantRows) Domain(name string) (tenant.Domain, error) {
	return registryGet[tenant.Domain](r.bucket(store.BucketDomains), []byte(name))
}

// Domains implements tenant.Rows with a scan of every domain: the bucket
// is keyed by name alone, and listing a tenant's domains is rare.
func (r tenantRows) Domains(tenantID string) ([]tenant.Domain, error) {
	all, err := registryScan[tenant.Domain](r.bucket(store.BucketDomains), nil)
	var out []tenant.Domain
	for _, d := range all {
		if d.Tenant == tenantID {
			out = append(out, d)
		}
	}
	return out, err
}

func (r tenantRows) PutDomain(d tenant.Domain) error {
	return putJSON(r.bucket(store.BucketDomains), []byte(d.Name), d)
}

func (r tenantRows) DeleteDomain(name string) error {
	return r.bucket(store.BucketDomains).Delete([]byte(name))
}

func (r tenantRows) Keys(domain string) ([]tenant.DKIMKey, error) {
	return registryScan[tenant.DKIMKey](r.bucket(store.BucketDKIMKeys), registryKeyPrefix(domain))
}

func (r tenantRows) PutKey(k tenant.DKIMKey) error {
	return putJSON(r.bucket(store.BucketDKIMKeys), registryKey(k.Domain, k.Selector), k)
}

func (r tenantRows) DeleteKey(domain, selector string) error {
	return r.bucket(store.BucketDKIMKeys).Delete(registryKey(domain, selector))
}

func (r tenantRows) DeleteKeys(domain string) error {
	return deletePrefix(r.bucket(store.BucketDKIMKeys), registryKeyPrefix(domain))
}

func (r tenantRows) List(tenantID, id string) (tenant.List, error) {
	return registryGet[tenant.List](r.bucket(store.BucketLists), registryKey(tenantID, id))
}

func (r tenantRows) Lists(tenantID string) ([]tenant.List, error) {
	return registryScan[tenant.List](r.bucket(store.BucketLists), registryKeyPrefix(tenantID))
}

func (r tenantRows) PutList(l tenant.List) error {
	return putJSON(r.bucket(store.BucketLists), registryKey(l.Tenant, l.ID), l)
}

func (r tenantRows) DeleteLists(tenantID string) error {
	return deletePrefix(r.bucket(store.BucketLists), registryKeyPrefix(tenantID))
}

// Tenants implements backend.Tx.
func (t *Tx) Tenants() tenant.Rows { return tenantRows{t.tx} }

// tenantCacheSlot is the key of the registry's read cache among the
// database's shared state: one cache per database file, whatever the
// number of stores over it.
type tenantCacheSlot struct{}

// Tenants returns the tenant registry's store kept in db, with the read
// cache every store over db shares.
func Tenants(db *store.DB) *tenant.DBStore {
	cache := db.Shared(tenantCacheSlot{}, func() any { return tenant.NewCache() }).(*tenant.Cache)
	return tenant.NewDBStore(txn.Narrow[backend.Tx, tenant.Rows](New(db), func(t backend.Tx) tenant.Rows { return t.Tenants() }), cache)
}
