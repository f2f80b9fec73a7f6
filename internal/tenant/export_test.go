package tenant

import "github.com/heedmail/heed/internal/txn"

// What the external tests (package tenant_test, which can import the
// backends) need of this package's insides.

// CacheKind is what a cached record is, for Cached.
type CacheKind = cacheKind

// Cache kinds, for Cached.
const (
	CacheTenant = cacheTenant
	CacheDomain = cacheDomain
	CacheList   = cacheList
	CacheKeys   = cacheKeys
)

// Cached reports whether the record of kind at k (a tenant id, a domain
// name, tenant+"\x00"+list id) is served from s's cache.
func (s *DBStore) Cached(kind cacheKind, k string) bool {
	_, ok := s.cache.get(cacheKey{kind, k})
	return ok
}

// InvalidateCache makes s's cache stale.
func (s *DBStore) InvalidateCache() { s.cache.Invalidate() }

// With returns a store over tx that shares s's cache, as every store over
// one database does.
func (s *DBStore) With(tx txn.Runner[Rows]) *DBStore { return NewDBStore(tx, s.cache) }
