package suppression

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
)

// BoltStore is the Store in Heed's embedded bbolt database.
//
// Layout, in store.BucketSuppressions:
//
//	key   tenant 0x00 HMAC-SHA256(key, normalised address)[:16] scope 0x00 reason
//	value the entry (encodeEntry): reason, time, address, channel, message id
//
// reason is one byte, the reason's code in reasonCodes (the value's
// encoding uses the same codes); the value repeats it, and a key and value
// that disagree are reported as corrupt. Scope is a list id or "*", never
// holding a 0x00, so the separator is unambiguous.
//
// One entry per tenant, address, scope and reason: two reasons of one scope
// are two entries, each added and removed on its own. An earlier layout
// kept one entry per scope, and a bounce replaced an opt-out from all
// marketing, so deleting the bounce later (the mailbox works again) let
// marketing resume to someone who had opted out (CAN-SPAM 15 U.S.C.
// 7704(a)(4)). That layout was never deployed and store.SchemaVersion was
// not bumped for the change; a key of it (no 0x00 after the scope) is
// reported as malformed, never read as an entry.
//
// The key holds a keyed hash of the address, not the address: erasing an
// address at its owner's request clears it from the value and leaves the
// key, so the opt-out still holds and Lookup still finds it, while nothing
// stored can be turned back into the address without the server key
// (addresses are guessable, so a bare hash would not do). 128 bits make a
// collision between two addresses of one tenant negligible. The address
// stays in the value until then so that List and CSV export can show it.
//
// Keys of one tenant and one address are adjacent, so Lookup is a single
// seek; keys of one tenant are adjacent, so List is a range scan; keys of
// one address and scope are adjacent, so Remove of every reason of a scope
// is a seek too.
type BoltStore struct {
	db   *store.DB
	now  func() time.Time
	macs sync.Pool // of hash.Hash: HMAC-SHA256 under the store's key
	soft SoftRule  // see WithSoftBounces
}

var _ Store = (*BoltStore)(nil)

// hashLen is the length of the keyed address hash in keys.
const hashLen = 16

// NewBoltStore returns the store over db. key is the secret of the address
// hashes: it must stay the same for the life of the database (a new key
// would lose every entry to Lookup), so it is not one of the rotating token
// keys; it must be at least 16 bytes, and NewBoltStore panics otherwise, a
// wiring mistake to catch at start. now is the clock that dates entries
// and events (time.Now when nil).
func NewBoltStore(db *store.DB, key []byte, now func() time.Time) *BoltStore {
	if len(key) < 16 {
		panic("suppression: the address hash key must be at least 16 bytes")
	}
	if now == nil {
		now = time.Now
	}
	k := bytes.Clone(key)
	s := &BoltStore{db: db, now: now}
	s.macs.New = func() any { return hmac.New(sha256.New, k) }
	return s
}

func tenantPrefix(tenantID string) []byte {
	return append([]byte(tenantID), 0)
}

// addrKey returns tenant 0x00 hash, the prefix of all entries of one
// address, with room for a scope and reason after it. It is on the
// delivery path, so it allocates once: the HMAC is summed into the key.
func (s *BoltStore) addrKey(tenantID, norm, scope string) []byte {
	k := make([]byte, 0, len(tenantID)+1+sha256.Size+len(scope)+2)
	k = append(append(k, tenantID...), 0)
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(norm))
	k = m.Sum(k)[:len(tenantID)+1+hashLen]
	s.macs.Put(m)
	return k
}

// scopeKey returns tenant 0x00 hash scope 0x00, the prefix of the entries
// of one address and scope.
func (s *BoltStore) scopeKey(tenantID, norm, scope string) []byte {
	return append(append(s.addrKey(tenantID, norm, scope), scope...), 0)
}

// entryKey returns the key of one entry.
func (s *BoltStore) entryKey(tenantID, norm, scope string, r Reason) []byte {
	return append(s.scopeKey(tenantID, norm, scope), reasonCode(r))
}

var allScope = []byte(All)

// splitTail reads the scope and reason that end a key, tail being the key
// less its tenant and hash.
func splitTail(tail []byte) (scope string, r Reason, ok bool) {
	n := len(tail)
	if n < 3 || bytes.IndexByte(tail, 0) != n-2 || int(tail[n-1]) >= len(reasonCodes) || tail[n-1] == 0 {
		return "", "", false
	}
	scope = All // most entries: spares the delivery path an allocation
	if sb := tail[:n-2]; !bytes.Equal(sb, allScope) {
		scope = string(sb)
	}
	return scope, reasonCodes[tail[n-1]], true
}

// decodeAt decodes the entry stored under k, whose scope and reason start
// at k[tail:]. Tenant and (unless erased) address are the caller's to set.
func decodeAt(k, v []byte, tail int) (Entry, error) {
	scope, r, ok := splitTail(k[tail:])
	if !ok {
		return Entry{}, fmt.Errorf("suppression key %x is malformed", k)
	}
	e, err := decodeEntry(v)
	if err == nil && e.Reason != r {
		err = errCorrupt
	}
	if err != nil {
		return Entry{}, fmt.Errorf("suppression entry %x: %w", k, err)
	}
	e.List = scope
	return e, nil
}

func checkTenant(t string) error {
	if err := tenant.ValidID(t); err != nil {
		return fmt.Errorf("%w: tenant: %v", ErrInvalid, err)
	}
	return nil
}

// checkTenantRead is the reads' check: only what the key layout needs (a
// tenant id with no 0x00 cannot reach into another tenant's keys). A
// malformed id just finds nothing, and the delivery path is spared the
// regular expression of tenant.ValidID.
func checkTenantRead(t string) error {
	if t == "" || strings.IndexByte(t, 0) >= 0 {
		return invalid("tenant id is empty or holds a NUL")
	}
	return nil
}

func checkScope(scope string) error {
	if scope == All {
		return nil
	}
	if err := tenant.ValidID(scope); err != nil {
		return fmt.Errorf("%w: list: %v", ErrInvalid, err)
	}
	return nil
}

// prepare validates e and puts it in its stored form.
func (s *BoltStore) prepare(e Entry) (Entry, error) {
	if err := checkTenant(e.Tenant); err != nil {
		return e, err
	}
	if _, err := ParseReason(string(e.Reason)); err != nil {
		return e, err
	}
	norm, err := Normalize(e.Address)
	if err != nil {
		return e, err
	}
	e.Address = norm
	if e.Reason == Bounce || e.Reason == Complaint {
		e.List = All // they are about the mailbox, see policy
	}
	if e.List == "" {
		return e, invalid("list is empty: name a list id or %q", All)
	}
	if err := checkScope(e.List); err != nil {
		return e, err
	}
	if len(e.Channel) > 64 || len(e.MessageID) > 128 || len(e.Link) > 64 {
		return e, invalid("channel, message id or link too long")
	}
	if e.Evidence != nil && len(*e.Evidence) > maxEvidence {
		return e, invalid("more than %d bounces of evidence", maxEvidence)
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	return e, nil
}

// put stores v under k unless an entry is there, and reports whether it
// did. The entry there has the same scope and reason (they are in the
// key), so keeping it loses nothing; an entry of another reason has
// another key and is never touched.
//
// One thing of the entry there does change: when it is marked as made
// through an opt-out link (Entry.Link) and v comes another way (the API,
// a mailto, an import, another link), the mark is cleared in the same
// transaction. The entry now also stands for that other opt-out, which the
// link's undo must never lift (Store.Undo); keeping the mark would let
// anyone holding the forwarded link take it back within the undo window.
func put(b *bolt.Bucket, k, v []byte) (bool, error) {
	old := b.Get(k)
	if old == nil {
		return true, b.Put(k, v)
	}
	return false, unmarkLink(b, k, old, v)
}

// unmarkLink clears the link mark of the entry old stored under k unless
// v, the entry being added on top, comes through the same link. Both are
// only decoded when old has a mark at all, so an import that meets
// existing entries pays nothing more for the common case.
func unmarkLink(b *bolt.Bucket, k, old, v []byte) error {
	oe, err := decodeEntry(old)
	if err != nil {
		return fmt.Errorf("suppression entry %x: %w", k, err)
	}
	if oe.Link == "" {
		return nil
	}
	ne, err := decodeEntry(v)
	if err != nil {
		return fmt.Errorf("suppression entry %x (new): %w", k, err)
	}
	if ne.Link == oe.Link {
		return nil // the same link again: still its own opt-out
	}
	oe.Link = ""
	return b.Put(k, encodeEntry(oe))
}

// appendEvents writes typ and each of also for d, at now, in tx.
func appendEvents(tx *bolt.Tx, now time.Time, d events.Data, typ events.Type, also []events.Type) error {
	for _, t := range append([]events.Type{typ}, also...) {
		if err := events.Append(boltdb.TxFromBolt(tx).Events(), &events.Event{Type: t, Time: now, Data: d}); err != nil {
			return err
		}
	}
	return nil
}

// Add implements Store.
func (s *BoltStore) Add(ctx context.Context, e Entry, also ...events.Type) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	e, err := s.prepare(e)
	if err != nil {
		return false, err
	}
	now := s.now()
	var created bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		created, err = s.addPrepared(tx, e, now, also) // fn may run more than once
		return err
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// AddTx is Add inside a transaction of the same database that the caller
// commits, for state changes that must suppress in the same commit (a
// delivery that hard-bounced: the bounce, the suppression and their events
// land together or not at all). Only other bbolt stores call it.
func (s *BoltStore) AddTx(tx *bolt.Tx, e Entry, also ...events.Type) (bool, error) {
	e, err := s.prepare(e)
	if err != nil {
		return false, err
	}
	return s.addPrepared(tx, e, s.now(), also)
}

func (s *BoltStore) addPrepared(tx *bolt.Tx, e Entry, now time.Time, also []events.Type) (bool, error) {
	k := s.entryKey(e.Tenant, e.Address, e.List, e.Reason)
	ok, err := put(tx.Bucket(store.BucketSuppressions), k, encodeEntry(e))
	if err != nil || !ok {
		return false, err
	}
	d := events.Data{Tenant: e.Tenant, Recipient: e.Address, List: e.List, Reason: string(e.Reason),
		Channel: e.Channel, MessageID: e.MessageID}
	if err := appendEvents(tx, now, d, events.SuppressionAdded, also); err != nil {
		return false, err
	}
	return true, nil
}

// Import adds many entries in one transaction and reports how many it
// wrote (those whose tenant, address, scope and reason were not there yet:
// the rules of Add), without events: it is for restoring a backup and for
// carrying a suppression list over from another provider, where a webhook
// per row would flood the tenant (the caller records the import itself, in
// the audit log). Any invalid entry fails the whole call, naming it by its
// position, before anything is written.
//
// Entries are written in key order. Fed one tenant per call, in tenant
// order, Import appends to the end of the B+tree, which is what makes
// loading millions of entries quick and the file compact.
func (s *BoltStore) Import(ctx context.Context, entries []Entry) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Sorting small records by key, then by position, keeps the first of
	// two entries with one key, as successive Adds would, without a
	// stable sort's cost (that sort was most of the time of a big import).
	type rec struct {
		kv
		i int
	}
	recs := make([]rec, len(entries))
	for i, e := range entries {
		k, v, err := s.prepareKV(e)
		if err != nil {
			return 0, fmt.Errorf("entry %d: %w", i, err)
		}
		recs[i] = rec{kv{k, v}, i}
	}
	slices.SortFunc(recs, func(a, b rec) int {
		if c := bytes.Compare(a.k, b.k); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	return s.writeSorted(func(yield func(kv) bool) {
		for _, r := range recs {
			if !yield(r.kv) {
				return
			}
		}
	})
}

// writeSorted writes records in key order in one transaction (recs may be
// read more than once: the transaction function may run again), keeping an
// entry that is there already (the first of equal keys wins), and reports
// how many it added. Sorted appends fill pages; bbolt's default half-full
// split would leave the file twice the size it needs.
func (s *BoltStore) writeSorted(recs iter.Seq[kv]) (int, error) {
	var added int
	err := s.db.Update(func(tx *bolt.Tx) error {
		added = 0
		b := tx.Bucket(store.BucketSuppressions)
		b.FillPercent = 0.9
		for r := range recs {
			ok, err := put(b, r.k, r.v)
			if err != nil {
				return err
			}
			if ok {
				added++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// kv is one entry in its stored form: its key and its value.
type kv struct{ k, v []byte }

// prepareKV validates e as Import does and returns its key and value, for
// an import that sorts the entries itself (ImportCSV) before importSorted.
func (s *BoltStore) prepareKV(e Entry) (k, v []byte, err error) {
	e, err = s.prepare(e)
	if err != nil {
		return nil, nil, err
	}
	return s.entryKey(e.Tenant, e.Address, e.List, e.Reason), encodeEntry(e), nil
}

// importSorted is Import for records that prepareKV made, already in
// strictly increasing key order (so no two with one key): one transaction,
// an entry that is there already is kept, no events, and it reports how
// many it wrote. Records out of order fail the call before anything is
// written. The records must stay unchanged until it returns.
func (s *BoltStore) importSorted(ctx context.Context, recs []kv) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for i := 1; i < len(recs); i++ {
		if bytes.Compare(recs[i-1].k, recs[i].k) >= 0 {
			return 0, fmt.Errorf("suppression: importSorted: record %d is out of key order", i)
		}
	}
	return s.writeSorted(slices.Values(recs))
}

// Remove implements Store.
func (s *BoltStore) Remove(ctx context.Context, tenantID, addr, scope string, reason Reason, also ...events.Type) (bool, error) {
	if reason != "" {
		if _, err := ParseReason(string(reason)); err != nil {
			return false, err
		}
	}
	return s.remove(ctx, tenantID, addr, scope, reason, nil, also)
}

// Undo implements Store. The condition is checked inside the transaction
// that deletes, so an entry removed and made again another way in the
// meantime is never taken for the one the link made.
func (s *BoltStore) Undo(ctx context.Context, tenantID, addr, scope, link string, since time.Time, also ...events.Type) (bool, error) {
	if link == "" {
		return false, invalid("link is empty")
	}
	madeByLink := func(e Entry) bool { return e.Link == link && !e.Time.Before(since) }
	return s.remove(ctx, tenantID, addr, scope, Unsubscribe, madeByLink, also)
}

// remove deletes the entries of tenantID, addr and scope of reason (every
// reason when ""), those for which match holds when it is not nil, each
// with its events, in one transaction.
func (s *BoltStore) remove(ctx context.Context, tenantID, addr, scope string, reason Reason, match func(Entry) bool, also []events.Type) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := checkTenant(tenantID); err != nil {
		return false, err
	}
	if err := checkScope(scope); err != nil {
		return false, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return false, err
	}
	prefix := s.scopeKey(tenantID, norm, scope)
	tail := len(prefix) - len(scope) - 1
	now := s.now()
	var removed bool
	err = s.db.Update(func(tx *bolt.Tx) error {
		removed = false
		b := tx.Bucket(store.BucketSuppressions)
		var keys [][]byte
		if reason != "" {
			if k := append(bytes.Clone(prefix), reasonCode(reason)); b.Get(k) != nil {
				keys = append(keys, k)
			}
		} else {
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k)) // deleted below, after the scan
			}
		}
		for _, k := range keys {
			oe, err := decodeAt(k, b.Get(k), tail)
			if err != nil {
				return err
			}
			if match != nil && !match(oe) {
				continue
			}
			if err := b.Delete(k); err != nil {
				return err
			}
			d := events.Data{Tenant: tenantID, Recipient: norm, List: scope, Reason: string(oe.Reason)}
			if err := appendEvents(tx, now, d, events.SuppressionRemoved, also); err != nil {
				return err
			}
			removed = true
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return removed, nil
}

// DeleteTenant implements Store. A tenant's keys are one range (in the
// entries and in the soft-bounce histories); they are deleted in
// transactions of at most deleteBatch keys so that a tenant of millions of
// entries does not make one huge commit.
func (s *BoltStore) DeleteTenant(ctx context.Context, tenantID string) error {
	if err := checkTenant(tenantID); err != nil {
		return err
	}
	for _, bucket := range [][]byte{store.BucketSuppressions, store.BucketSoftBounces} {
		if err := s.deleteRange(ctx, bucket, tenantPrefix(tenantID)); err != nil {
			return err
		}
	}
	return nil
}

// deleteRange deletes the keys of bucket that start with pfx.
func (s *BoltStore) deleteRange(ctx context.Context, bucket, pfx []byte) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		more := false
		err := s.db.Update(func(tx *bolt.Tx) error {
			more = false
			c := tx.Bucket(bucket).Cursor()
			n := 0
			for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Seek(pfx) {
				if n == deleteBatch {
					more = true
					return nil
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil || !more {
			return err
		}
	}
}

const deleteBatch = 10000

// Lookup implements Store.
func (s *BoltStore) Lookup(ctx context.Context, tenantID, addr string) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenantRead(tenantID); err != nil {
		return nil, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	prefix := s.addrKey(tenantID, norm, "")
	var out []Entry
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketSuppressions).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			e, err := decodeAt(k, v, len(prefix))
			if err != nil {
				return err
			}
			e.Tenant = tenantID
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// List page sizes, and how many entries one call examines at most when a
// scope filter skips most of them, so a page costs bounded time.
const (
	defaultLimit = 100
	maxLimit     = 1000
	scanBudget   = 10000
)

var cursorEnc = base64.RawURLEncoding.Strict()

// List implements Store. The cursor is the key of the last entry examined,
// less the tenant, so it cannot reach another tenant's keys.
func (s *BoltStore) List(ctx context.Context, tenantID, scope, cursor string, limit int) ([]Entry, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := checkTenantRead(tenantID); err != nil {
		return nil, "", err
	}
	if scope != "" {
		if err := checkScope(scope); err != nil {
			return nil, "", err
		}
	}
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	prefix := tenantPrefix(tenantID)
	start := prefix
	var after []byte
	if cursor != "" {
		c, err := cursorEnc.DecodeString(cursor)
		if err != nil || len(c) <= hashLen {
			return nil, "", invalid("malformed cursor")
		}
		if _, _, ok := splitTail(c[hashLen:]); !ok {
			return nil, "", invalid("malformed cursor")
		}
		after = append(bytes.Clone(prefix), c...)
		start = after
	}
	var out []Entry
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketSuppressions).Cursor()
		var last []byte
		examined := 0
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if after != nil && bytes.Equal(k, after) {
				continue
			}
			if len(k) <= len(prefix)+hashLen {
				return fmt.Errorf("suppression key %x is too short", k)
			}
			ks, _, ok := splitTail(k[len(prefix)+hashLen:])
			if !ok {
				return fmt.Errorf("suppression key %x is malformed", k)
			}
			match := scope == "" || ks == scope
			if examined == scanBudget || match && len(out) == limit {
				next = cursorEnc.EncodeToString(last[len(prefix):])
				return nil
			}
			examined++
			last = k
			if !match {
				continue
			}
			e, err := decodeAt(k, v, len(prefix)+hashLen)
			if err != nil {
				return err
			}
			e.Tenant = tenantID
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// The value encoding. Tenant and scope are in the key, and the reason too
// (as the same code). Version 1:
//
//	byte     1 (the version)
//	byte     reason code (reasonCodes)
//	varint   seconds since 1970 (UTC)
//	uvarint  nanoseconds
//	uvarint  length, bytes   for each of address, channel, message id
//	uvarint  length, bytes   link (Entry.Link), only when not empty
//
// The link came later and is written only when there is one, so values
// written before it read as they did (no link: no undo), and a value
// without one is byte for byte what it was.
//
// Version 2, only for an entry with Evidence (soft bounces that
// escalated), is version 1 with the link always written (maybe empty),
// then:
//
//	uvarint  number of bounces, then for each:
//	varint   seconds, uvarint nanoseconds
//	uvarint  length, bytes   for each of message id, status, reason,
//	                         diagnostic, channel
//
// About 40 bytes plus the strings, against about 150 for JSON: at ten
// million entries that is the difference between a file that stays in the
// page cache and one that does not.
const (
	valueV1 = 1
	valueV2 = 2
)

var reasonCodes = []Reason{1: Unsubscribe, 2: Bounce, 3: Complaint, 4: Manual, 5: Import}

var errCorrupt = errors.New("corrupt value")

// reasonCode is r's code, in values and keys. Callers have checked r.
func reasonCode(r Reason) byte { return byte(slices.Index(reasonCodes, r)) }

func appendString(v []byte, s string) []byte {
	v = binary.AppendUvarint(v, uint64(len(s)))
	return append(v, s...)
}

func appendTime(v []byte, t time.Time) []byte {
	v = binary.AppendVarint(v, t.Unix())
	return binary.AppendUvarint(v, uint64(t.Nanosecond()))
}

func encodeEntry(e Entry) []byte {
	code := reasonCode(e.Reason) // prepare checked it
	v := make([]byte, 0, 2+2*binary.MaxVarintLen64+4+len(e.Address)+len(e.Channel)+len(e.MessageID)+len(e.Link))
	version := byte(valueV1)
	if e.Evidence != nil && len(*e.Evidence) > 0 {
		version = valueV2
	}
	v = append(v, version, code)
	v = appendTime(v, e.Time)
	for _, s := range []string{e.Address, e.Channel, e.MessageID} {
		v = appendString(v, s)
	}
	if e.Link != "" || version == valueV2 {
		v = appendString(v, e.Link)
	}
	if version == valueV2 {
		v = binary.AppendUvarint(v, uint64(len(*e.Evidence)))
		for _, b := range *e.Evidence {
			v = appendTime(v, b.Time)
			for _, s := range []string{b.MessageID, b.Status, b.Reason, b.Diagnostic, b.Channel} {
				v = appendString(v, s)
			}
		}
	}
	return v
}

// valueReader reads the fields of a value, remembering the first error.
type valueReader struct {
	v   []byte
	bad bool
}

func (r *valueReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.v)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.v = r.v[n:]
	return x
}

func (r *valueReader) time() time.Time {
	sec, n := binary.Varint(r.v)
	if n <= 0 {
		r.bad = true
		return time.Time{}
	}
	r.v = r.v[n:]
	nsec := r.uvarint()
	if nsec >= 1e9 {
		r.bad = true
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (r *valueReader) string() string {
	l := r.uvarint()
	if r.bad || l > uint64(len(r.v)) {
		r.bad = true
		return ""
	}
	s := string(r.v[:l])
	r.v = r.v[l:]
	return s
}

func decodeEntry(v []byte) (Entry, error) {
	var e Entry
	if len(v) < 2 || v[0] != valueV1 && v[0] != valueV2 || int(v[1]) >= len(reasonCodes) || v[1] == 0 {
		return e, errCorrupt
	}
	version := v[0]
	e.Reason = reasonCodes[v[1]]
	r := &valueReader{v: v[2:]}
	e.Time = r.time()
	e.Address, e.Channel, e.MessageID = r.string(), r.string(), r.string()
	// No link in version 1: written by another way in, or before links
	// were kept.
	if version == valueV2 || len(r.v) > 0 {
		e.Link = r.string()
	}
	if version == valueV2 {
		n := r.uvarint()
		if n > maxEvidence {
			return e, errCorrupt
		}
		evidence := make([]SoftBounce, 0, n)
		for range n {
			b := SoftBounce{Time: r.time()}
			b.MessageID, b.Status, b.Reason, b.Diagnostic, b.Channel = r.string(), r.string(), r.string(), r.string(), r.string()
			evidence = append(evidence, b)
		}
		e.Evidence = &evidence
	}
	if r.bad {
		return Entry{}, errCorrupt
	}
	return e, nil
}
