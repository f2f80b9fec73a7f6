package suppression

import (
	"bytes"
	"encoding/base64"
	"time"

	"github.com/heedmail/heed/internal/events"
)

// HashLen is the length of Hash.
const HashLen = 16

// Hash is the keyed hash of a normalised address, HMAC-SHA256 under the
// store's address key cut to 128 bits: what a backend keys entries by,
// never the address itself, so that an erasure can drop the address and
// keep the opt-out (compliance.md, Privacy promises). 128 bits make a
// collision between two addresses of one tenant negligible; the HMAC
// (addresses are guessable, a bare hash would not do) is this package's
// rule, the backend only stores the bytes.
type Hash [HashLen]byte

// Key names one entry of a tenant: an address (by its Hash), a scope (a
// list id or All) and a reason. Entries are ordered by Hash, then Scope
// bytewise, then Reason's code (reasonCodes), on every backend: List's
// cursors depend on it.
type Key struct {
	Hash   Hash
	Scope  string
	Reason Reason
}

// Row is an entry as a backend keeps it: the entry (whose Tenant, List
// and Reason complete its key) and its address's hash. Entry.Address is
// empty once erased.
type Row struct {
	Hash  Hash
	Entry Entry
}

// Key returns r's key.
func (r Row) Key() Key { return Key{Hash: r.Hash, Scope: r.Entry.List, Reason: r.Entry.Reason} }

// Rows is the suppression list's face inside a transaction: the rows a
// storage backend keeps (internal/backend/boltdb, internal/backend/
// postgres). Normalisation, the keyed hash, validation, the policy and
// the rules about link marks and soft bounces are this package's.
// Every method names its tenant but Everywhere and HistoriesEverywhere,
// the privacy export's and erasure's.
type Rows interface {
	// Entries returns tenant's entries of each of hashes, in key order:
	// on PostgreSQL one query, whatever the number of hashes.
	Entries(tenant string, hashes ...Hash) ([]Row, error)
	// Get returns tenant's entry of k, false when there is none.
	Get(tenant string, k Key) (Entry, bool, error)
	// Put stores r, replacing an entry of the same key.
	Put(r Row) error
	// Delete removes tenant's entry of k, if any.
	Delete(tenant string, k Key) error
	// Insert stores the rows of rs (of distinct keys) whose key is free,
	// and returns, for the others, the row already there.
	Insert(rs []Row) (existing []Row, err error)
	// Page returns up to limit entries of tenant (of scope only, unless
	// scope is "") whose keys follow after (nil: from the first), in key
	// order, and the key to go on after, nil when there is nothing more.
	// A backend may examine a bounded number of rows per call, and then
	// return fewer than limit rows with a next key.
	Page(tenant, scope string, after *Key, limit int) (rs []Row, next *Key, err error)
	// Everywhere returns the entries of h in every tenant.
	Everywhere(h Hash) ([]Row, error)
	// DeleteTenant deletes up to max of tenant's entries and soft-bounce
	// histories and returns how many.
	DeleteTenant(tenant string, max int) (int, error)

	// History returns tenant's soft-bounce history of h, false when none.
	History(tenant string, h Hash) (History, bool, error)
	// PutHistory stores hist (of hist.Tenant) for h, replacing one there.
	PutHistory(h Hash, hist History) error
	// DeleteHistory removes tenant's history of h, if any.
	DeleteHistory(tenant string, h Hash) error
	// HistoriesEverywhere returns the histories of h in every tenant.
	HistoriesEverywhere(h Hash) ([]History, error)
	// PurgeHistories deletes up to max histories last updated before
	// cutoff, starting at from (an opaque position, "" for the start),
	// and returns how many and where to go on ("": done).
	PurgeHistories(cutoff time.Time, from string, max int) (n int, next string, err error)

	// For heed storage copy, which moves every row to another backend.

	// Histories returns up to limit soft-bounce histories of every tenant
	// from the opaque position after ("": the first), and where to go on
	// ("": done).
	Histories(after string, limit int) (hs []HistoryRow, next string, err error)
}

// HistoryRow is a soft-bounce history as a backend keeps it, with the
// keyed hash of its address (which the history itself does not hold).
type HistoryRow struct {
	Hash    Hash
	History History
}

// Tx is what the suppression list needs in one transaction: its rows, and
// the event log, so that an entry and its events commit together.
type Tx interface {
	Suppressions() Rows
	Events() events.TxLog
}

var cursorEnc = base64.RawURLEncoding.Strict()

// AppendKey appends k as bytes that sort as keys do: hash, scope, 0x00,
// reason code. It is the form of List's cursors and of the CSV import's
// sort keys, and the bbolt backend's keys after the tenant.
func AppendKey(b []byte, k Key) []byte {
	b = append(append(b, k.Hash[:]...), k.Scope...)
	return append(b, 0, reasonCode(k.Reason))
}

// ParseKey reads what AppendKey wrote.
func ParseKey(b []byte) (Key, bool) {
	var k Key
	if len(b) < HashLen+3 {
		return k, false
	}
	copy(k.Hash[:], b)
	tail := b[HashLen:]
	n := len(tail)
	if bytes.IndexByte(tail, 0) != n-2 || int(tail[n-1]) >= len(reasonCodes) || tail[n-1] == 0 {
		return k, false
	}
	k.Scope = All // most entries: spares the delivery path an allocation
	if sb := tail[:n-2]; string(sb) != All {
		k.Scope = string(sb)
	}
	k.Reason = reasonCodes[tail[n-1]]
	return k, true
}
