package suppression

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
)

// Service is the Store over a storage backend: this package's rules
// (normalisation, the keyed hash of addresses, validation, link marks,
// soft-bounce escalation, erasure) on the rows a backend keeps (Rows).
//
// One entry per tenant, address, scope and reason: two reasons of one scope
// are two entries, each added and removed on its own. An earlier layout
// kept one entry per scope, and a bounce replaced an opt-out from all
// marketing, so deleting the bounce later (the mailbox works again) let
// marketing resume to someone who had opted out (CAN-SPAM 15 U.S.C.
// 7704(a)(4)).
//
// Entries are keyed by the keyed hash of the address (Hash), not the
// address: erasing an address at its owner's request clears it from the
// entry and leaves the key, so the opt-out still holds and Lookup still
// finds it, while nothing stored can be turned back into the address
// without the server key. The address stays in the entry until then so
// that List and CSV export can show it.
type Service struct {
	tx   txn.Runner[Tx]
	now  func() time.Time
	macs sync.Pool // of hash.Hash: HMAC-SHA256 under the store's key
	soft SoftRule  // see WithSoftBounces
}

var _ Store = (*Service)(nil)

// New returns the store over tx. key is the secret of the address hashes:
// it must stay the same for the life of the database (a new key would
// lose every entry to Lookup), so it is not one of the rotating token
// keys; it must be at least 16 bytes, and New panics otherwise, a wiring
// mistake to catch at start. now is the clock that dates entries and
// events (time.Now when nil).
func New(tx txn.Runner[Tx], key []byte, now func() time.Time) *Service {
	if len(key) < 16 {
		panic("suppression: the address hash key must be at least 16 bytes")
	}
	if now == nil {
		now = time.Now
	}
	k := bytes.Clone(key)
	s := &Service{tx: tx, now: now}
	s.macs.New = func() any { return hmac.New(sha256.New, k) }
	return s
}

// hash is the keyed hash of norm, a normalised address.
func (s *Service) hash(norm string) Hash {
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(norm))
	var sum [sha256.Size]byte
	var h Hash
	copy(h[:], m.Sum(sum[:0]))
	s.macs.Put(m)
	return h
}

func keyOf(h Hash, e Entry) Key { return Key{Hash: h, Scope: e.List, Reason: e.Reason} }

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
func (s *Service) prepare(e Entry) (Entry, error) {
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

// putNew stores e unless its entry exists, and reports whether it did.
// The entry there has the same scope and reason (they are in the key), so
// keeping it loses nothing; an entry of another reason has another key and
// is never touched.
//
// One thing of the entry there does change: when it is marked as made
// through an opt-out link (Entry.Link) and e comes another way (the API,
// a mailto, an import, another link), the mark is cleared in the same
// transaction. The entry now also stands for that other opt-out, which the
// link's undo must never lift (Store.Undo); keeping the mark would let
// anyone holding the forwarded link take it back within the undo window.
func putNew(rows Rows, h Hash, e Entry) (bool, error) {
	old, ok, err := rows.Get(e.Tenant, keyOf(h, e))
	if err != nil {
		return false, err
	}
	if !ok {
		return true, rows.Put(Row{Hash: h, Entry: e})
	}
	if unmark(&old, e) {
		return false, rows.Put(Row{Hash: h, Entry: old})
	}
	return false, nil
}

// unmark clears old's link mark unless e, the entry being added on top,
// comes through the same link, and reports whether it changed old.
func unmark(old *Entry, e Entry) bool {
	if old.Link == "" || old.Link == e.Link {
		return false
	}
	old.Link = ""
	return true
}

// appendEvents writes typ and each of also for d, at now, in tx.
func appendEvents(tx events.TxLog, now time.Time, d events.Data, typ events.Type, also []events.Type) error {
	for _, t := range append([]events.Type{typ}, also...) {
		if err := events.Append(tx, &events.Event{Type: t, Time: now, Data: d}); err != nil {
			return err
		}
	}
	return nil
}

// Add implements Store.
func (s *Service) Add(ctx context.Context, e Entry, also ...events.Type) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	e, err := s.prepare(e)
	if err != nil {
		return false, err
	}
	now := s.now()
	var created bool
	err = s.tx.Update(ctx, func(tx Tx) error {
		var err error
		created, err = s.addPrepared(tx, e, now, also) // fn may run more than once
		return err
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// AddTx is Add inside a transaction that the caller commits, for state
// changes that must suppress in the same commit (a delivery that
// hard-bounced: the bounce, the suppression and their events land
// together or not at all).
func (s *Service) AddTx(tx Tx, e Entry, also ...events.Type) (bool, error) {
	e, err := s.prepare(e)
	if err != nil {
		return false, err
	}
	return s.addPrepared(tx, e, s.now(), also)
}

func (s *Service) addPrepared(tx Tx, e Entry, now time.Time, also []events.Type) (bool, error) {
	ok, err := putNew(tx.Suppressions(), s.hash(e.Address), e)
	if err != nil || !ok {
		return false, err
	}
	d := events.Data{Tenant: e.Tenant, Recipient: e.Address, List: e.List, Reason: string(e.Reason),
		Channel: e.Channel, MessageID: e.MessageID}
	if err := appendEvents(tx.Events(), now, d, events.SuppressionAdded, also); err != nil {
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
// Entries are written in key order: on bbolt, fed one tenant per call, in
// tenant order, that appends to the end of the B+tree, which is what makes
// loading millions of entries quick and the file compact.
func (s *Service) Import(ctx context.Context, entries []Entry) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	type rec struct {
		k []byte
		Row
		i int
	}
	recs := make([]rec, len(entries))
	for i, e := range entries {
		e, err := s.prepare(e)
		if err != nil {
			return 0, fmt.Errorf("entry %d: %w", i, err)
		}
		r := Row{Hash: s.hash(e.Address), Entry: e}
		recs[i] = rec{sortKey(r), r, i}
	}
	// Sorting small records by key, then by position, keeps the first of
	// two entries with one key, as successive Adds would, without a
	// stable sort's cost.
	slices.SortFunc(recs, func(a, b rec) int {
		if c := bytes.Compare(a.k, b.k); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	var rows []Row
	for i, r := range recs {
		if i > 0 && bytes.Equal(recs[i-1].k, r.k) {
			// A later duplicate is an Add on top of the first: it may
			// clear the first one's link mark, and adds nothing.
			unmark(&rows[len(rows)-1].Entry, r.Entry)
			continue
		}
		rows = append(rows, r.Row)
	}
	return s.insert(ctx, rows)
}

// Row is e as Add would store it (checked, normalised, its address
// hashed under the store's key), for a bulk loader that writes rows
// straight into a backend (the PostgreSQL benchmark's 10 M entries).
func (s *Service) Row(e Entry) (Row, error) {
	e, err := s.prepare(e)
	if err != nil {
		return Row{}, err
	}
	return Row{Hash: s.hash(e.Address), Entry: e}, nil
}

// sortKey is tenant 0x00 AppendKey(r's key): the order of Import and of
// the CSV import's sort.
func sortKey(r Row) []byte {
	return AppendKey(append([]byte(r.Entry.Tenant), 0), r.Key())
}

// insert writes rows (of distinct keys, in key order) in one transaction
// with Add's rules and no events, and reports how many it added.
func (s *Service) insert(ctx context.Context, rows []Row) (int, error) {
	var added int
	err := s.tx.Update(ctx, func(tx Tx) error {
		r := tx.Suppressions()
		existing, err := r.Insert(rows)
		if err != nil {
			return err
		}
		added = len(rows) - len(existing)
		if len(existing) == 0 {
			return nil
		}
		incoming := make(map[string]Entry, len(existing))
		for _, row := range rows {
			incoming[string(sortKey(row))] = row.Entry
		}
		for _, old := range existing {
			if unmark(&old.Entry, incoming[string(sortKey(old))]) {
				if err := r.Put(old); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// kv is one entry as the CSV import sorts it: its sort key and its
// compact encoding.
type kv struct{ k, v []byte }

// prepareKV validates e as Import does and returns its sort key and
// encoding, for an import that sorts the entries itself (ImportCSV) before
// importSorted.
func (s *Service) prepareKV(e Entry) (k, v []byte, err error) {
	e, err = s.prepare(e)
	if err != nil {
		return nil, nil, err
	}
	return sortKey(Row{Hash: s.hash(e.Address), Entry: e}), EncodeEntry(e), nil
}

// importSorted is Import for records that prepareKV made, already in
// strictly increasing key order (so no two with one key): one transaction,
// an entry that is there already is kept, no events, and it reports how
// many it wrote. Records out of order fail the call before anything is
// written.
func (s *Service) importSorted(ctx context.Context, recs []kv) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	rows := make([]Row, len(recs))
	for i, r := range recs {
		if i > 0 && bytes.Compare(recs[i-1].k, r.k) >= 0 {
			return 0, fmt.Errorf("suppression: importSorted: record %d is out of key order", i)
		}
		t := bytes.IndexByte(r.k, 0)
		k, ok := ParseKey(r.k[t+1:])
		if t < 0 || !ok {
			return 0, fmt.Errorf("suppression: importSorted: record %d has a malformed key", i)
		}
		e, err := DecodeEntry(r.v)
		if err != nil {
			return 0, fmt.Errorf("suppression: importSorted: record %d: %w", i, err)
		}
		e.Tenant, e.List = string(r.k[:t]), k.Scope
		rows[i] = Row{Hash: k.Hash, Entry: e}
	}
	return s.insert(ctx, rows)
}

// Remove implements Store.
func (s *Service) Remove(ctx context.Context, tenantID, addr, scope string, reason Reason, also ...events.Type) (bool, error) {
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
func (s *Service) Undo(ctx context.Context, tenantID, addr, scope, link string, since time.Time, also ...events.Type) (bool, error) {
	if link == "" {
		return false, invalid("link is empty")
	}
	madeByLink := func(e Entry) bool { return e.Link == link && !e.Time.Before(since) }
	return s.remove(ctx, tenantID, addr, scope, Unsubscribe, madeByLink, also)
}

// remove deletes the entries of tenantID, addr and scope of reason (every
// reason when ""), those for which match holds when it is not nil, each
// with its events, in one transaction.
func (s *Service) remove(ctx context.Context, tenantID, addr, scope string, reason Reason, match func(Entry) bool, also []events.Type) (bool, error) {
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
	h := s.hash(norm)
	now := s.now()
	var removed bool
	err = s.tx.Update(ctx, func(tx Tx) error {
		removed = false
		rows := tx.Suppressions()
		var found []Entry
		if reason != "" {
			e, ok, err := rows.Get(tenantID, Key{Hash: h, Scope: scope, Reason: reason})
			if err != nil {
				return err
			}
			if ok {
				found = append(found, e)
			}
		} else {
			all, err := rows.Entries(tenantID, h)
			if err != nil {
				return err
			}
			for _, r := range all {
				if r.Entry.List == scope {
					found = append(found, r.Entry)
				}
			}
		}
		for _, e := range found {
			if match != nil && !match(e) {
				continue
			}
			if err := rows.Delete(tenantID, Key{Hash: h, Scope: scope, Reason: e.Reason}); err != nil {
				return err
			}
			d := events.Data{Tenant: tenantID, Recipient: norm, List: scope, Reason: string(e.Reason)}
			if err := appendEvents(tx.Events(), now, d, events.SuppressionRemoved, also); err != nil {
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

// deleteBatch bounds the rows one transaction of DeleteTenant deletes, so
// that a tenant of millions of entries does not make one huge commit.
const deleteBatch = 10000

// DeleteTenant implements Store, in transactions of at most deleteBatch
// entries and histories.
func (s *Service) DeleteTenant(ctx context.Context, tenantID string) error {
	if err := checkTenant(tenantID); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := 0
		err := s.tx.Update(ctx, func(tx Tx) error {
			var err error
			n, err = tx.Suppressions().DeleteTenant(tenantID, deleteBatch)
			return err
		})
		if err != nil || n < deleteBatch {
			return err
		}
	}
}

// Lookup implements Store.
func (s *Service) Lookup(ctx context.Context, tenantID, addr string) ([]Entry, error) {
	all, err := s.LookupAll(ctx, tenantID, []string{addr})
	if err != nil {
		return nil, err
	}
	return all[0], nil
}

// LookupAll is Lookup for every address of addrs at once (the recipients
// of one message): one read of the backend, one query on PostgreSQL.
// out[i] holds addrs[i]'s entries; an address that does not normalise
// fails the whole call with ErrInvalid.
func (s *Service) LookupAll(ctx context.Context, tenantID string, addrs []string) ([][]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTenantRead(tenantID); err != nil {
		return nil, err
	}
	hashes := make([]Hash, len(addrs))
	for i, a := range addrs {
		norm, err := Normalize(a)
		if err != nil {
			return nil, err
		}
		hashes[i] = s.hash(norm)
	}
	out := make([][]Entry, len(addrs))
	err := txn.ViewOne(ctx, s.tx, func(tx Tx) error {
		clear(out)
		rows, err := tx.Suppressions().Entries(tenantID, hashes...)
		if err != nil {
			return err
		}
		for _, r := range rows {
			r.Entry.Tenant = tenantID
			for i, h := range hashes {
				if h == r.Hash {
					out[i] = append(out[i], r.Entry)
				}
			}
		}
		return nil
	})
	return out, err
}

// List page sizes.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// List implements Store. The cursor is the key of the last entry examined,
// less the tenant, so it cannot reach another tenant's entries.
func (s *Service) List(ctx context.Context, tenantID, scope, cursor string, limit int) ([]Entry, string, error) {
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
	var after *Key
	if cursor != "" {
		c, err := cursorEnc.DecodeString(cursor)
		if err != nil {
			return nil, "", invalid("malformed cursor")
		}
		k, ok := ParseKey(c)
		if !ok {
			return nil, "", invalid("malformed cursor")
		}
		after = &k
	}
	var out []Entry
	var next string
	err := s.tx.View(ctx, func(tx Tx) error {
		rows, nk, err := tx.Suppressions().Page(tenantID, scope, after, limit)
		if err != nil {
			return err
		}
		out, next = out[:0], ""
		for _, r := range rows {
			r.Entry.Tenant = tenantID
			out = append(out, r.Entry)
		}
		if nk != nil {
			next = cursorEnc.EncodeToString(AppendKey(nil, *nk))
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
