package tenant

import (
	"sync"
	"sync/atomic"
)

// Cache keeps the records every message reads, at submission and again
// at each delivery attempt (its tenant, its list, its From domain and the
// domain's DKIM keys), so that they cost a map lookup rather than a
// database read transaction and a decode each: about 4% of the CPU of a
// message relayed end to end on bbolt (docs/benchmarks.md), and a round
// trip each on PostgreSQL. It also keeps the index of ip credentials'
// networks (netindex.go) that every session without AUTH is matched
// against.
//
// It is exact, not time-bound. Every write of the registry through a
// DBStore bumps a generation once its transaction has committed and
// before the writer hears of it (and after a failed write as well), and
// an entry read under an older generation is never served: any read that
// starts after a write has returned sees it. (Between the database
// publishing a commit and the bump, the uncached listings may show the
// new state a moment before these lookups do; the writer has not been
// answered yet.) A reader takes the generation before it reads the
// database, so a value read just before a write is stored under the old
// generation and dropped.
//
// One Cache belongs to one database, shared by every DBStore over it
// (boltdb.Tenants, postgres.Tenants), so each sees the others' writes.
// That is exact while every write of the registry is made in this
// process: true of bbolt, whose file one process has open. Several nodes
// on one PostgreSQL call Invalidate when another node writes the
// registry: a NOTIFY sent in the writing transaction and a LISTEN that
// calls Invalidate, also when the listening connection was lost (notices
// sent meanwhile are lost with it; postgres.Cluster).
type Cache struct {
	gen atomic.Uint64

	mu      sync.RWMutex
	entries map[cacheKey]any
	// entriesGen is the generation every entry in entries was read under:
	// a put under an older one is refused and one under a newer one
	// starts the map afresh, so dead entries never pile up and an entry
	// is current exactly when entriesGen is.
	entriesGen uint64
}

// NewCache returns an empty cache, for the DBStores over one database.
func NewCache() *Cache { return &Cache{entries: make(map[cacheKey]any)} }

// Invalidate makes every entry stale: DBStore calls it after each write.
func (c *Cache) Invalidate() { c.gen.Add(1) }

// maxCacheEntries bounds the cache; when it is full it starts again
// empty, which costs one database read per record still in use.
const maxCacheEntries = 10000

type cacheKind byte

const (
	cacheTenant cacheKind = iota + 1
	cacheDomain
	cacheList
	cacheKeys
	cacheNetworks // the one netIndex, key ""
)

type cacheKey struct {
	kind cacheKind
	key  string
}

func (c *Cache) get(k cacheKey) (any, bool) {
	g := c.gen.Load()
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.entries[k]
	return v, ok && c.entriesGen == g
}

func (c *Cache) put(k cacheKey, g uint64, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case g < c.entriesGen:
		return // read before a write that others have already seen
	case g > c.entriesGen || len(c.entries) >= maxCacheEntries:
		clear(c.entries)
		c.entriesGen = g
	}
	c.entries[k] = v
}

// cached returns the value of k, reading it with load when the cache has
// no current copy. Misses (errors, ErrNotFound among them) are not kept.
func cached[T any](c *Cache, k cacheKey, load func() (T, error)) (T, error) {
	if v, ok := c.get(k); ok {
		return v.(T), nil
	}
	g := c.gen.Load()
	v, err := load()
	if err == nil {
		c.put(k, g, v)
	}
	return v, err
}
