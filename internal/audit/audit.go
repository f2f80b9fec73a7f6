// Package audit is the admin API's audit log: who changed what, when. It
// is a domain store over a storage backend (Rows, its face inside a
// transaction), so that an admin change and its record can commit in one
// transaction (docs/storage.md); what an erasure changes in a record is
// this package's rule.
package audit

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
)

// Record is one change made through the API.
type Record struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Actor is who: "operator:" and the first 8 hex digits of the SHA-256
	// of the operator token, or "api_key:" and the key's id.
	Actor string `json:"actor"`
	// Tenant is the tenant the change concerns ("" for none).
	Tenant string `json:"tenant,omitempty"`
	// Action is the route, as "METHOD /api/v1/tenants/:tenant/...".
	Action string `json:"action"`
	// Target is the request path (the resource changed), an address in it
	// in its normalised form (suppression.Normalize).
	Target string `json:"target"`
	Status int    `json:"status"`
	// RemoteIP is the client's address as the listener saw it.
	RemoteIP string `json:"remote_ip"`
}

// Rows is the audit log's face inside a transaction: the records a
// storage backend keeps (internal/backend/boltdb, internal/backend/
// postgres).
//
// Sequence numbers grow in commit order, as the event log's do
// (events.TxLog), so that a reader paging with after= never passes a
// record committed late.
type Rows interface {
	// Append stores r under the next sequence number, which it sets in
	// r.Seq.
	Append(r *Record) error
	// Records returns up to limit records with Seq > after, in Seq order,
	// of tenant or of every tenant (""). A backend may examine a bounded
	// number of records when tenant is not "" and return fewer.
	Records(tenant string, after uint64, limit int) ([]Record, error)
	// Replace rewrites the record at r.Seq, if it is still there.
	Replace(r Record) error

	// For heed storage copy (see events.TxLog): Restore stores rs, in
	// ascending Seq order and above every record there, each at its own
	// Seq; the next Append numbers above them and above last.
	Restore(rs []Record, last uint64) error
}

// Append writes r in the transaction of the change it records.
func Append(rows Rows, r *Record) error { return rows.Append(r) }

// Log is the audit log over a storage backend.
//
// Lifecycle: built once at start over an open backend (New), shared by
// every goroutine; the backend under it is closed, not the Log.
type Log struct{ tx txn.Runner[Rows] }

// New returns the log kept by tx.
func New(tx txn.Runner[Rows]) *Log { return &Log{tx: tx} }

// Append stores r in a transaction of its own, for a change that could not
// record it in its own transaction, and sets r.Seq once committed.
func (l *Log) Append(ctx context.Context, r *Record) error {
	var seq uint64
	err := l.tx.Update(ctx, func(rows Rows) error {
		rec := *r
		if err := rows.Append(&rec); err != nil {
			return err
		}
		seq = rec.Seq
		return nil
	})
	if err == nil {
		r.Seq = seq // the function may have run more than once: set once it committed
	}
	return err
}

// Records returns up to limit records with Seq > after, oldest first, of
// one tenant or all ("").
func (l *Log) Records(ctx context.Context, tenant string, after uint64, limit int) ([]Record, error) {
	var out []Record
	err := l.tx.View(ctx, func(rows Rows) error {
		var err error
		out, err = rows.Records(tenant, after, limit)
		return err
	})
	return out, err
}

// eraseBatch bounds the records one transaction of Erase examines, so
// that an erasure never holds the writer (and the 250s behind it) long.
const eraseBatch = 10000

// Erase removes addr, a normalised address, from the audit records and
// returns how many it changed, in transactions of at most eraseBatch
// records. A record names an address in its Target when its route ends
// in :address (the admin API writes it normalised; records written before
// that hold it as sent, so it is normalised here to compare); other
// segments are compared decoded.
func (l *Log) Erase(ctx context.Context, addr string) (int, error) {
	total := 0
	for after := uint64(0); ; {
		var n int
		var last uint64
		var page int
		err := l.tx.Update(ctx, func(rows Rows) error {
			n, last = 0, after
			recs, err := rows.Records("", after, eraseBatch)
			if err != nil {
				return err
			}
			page = len(recs)
			for _, r := range recs {
				last = r.Seq
				target, hit := EraseTarget(r, addr)
				if !hit {
					continue
				}
				r.Target = target
				if err := rows.Replace(r); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total, after = total+n, last
		if page < eraseBatch {
			return total, nil
		}
	}
}

// EraseTarget is r's Target with addr replaced by events.Erased, and
// whether it named addr.
func EraseTarget(r Record, addr string) (string, bool) {
	_, route, _ := strings.Cut(r.Action, " ")
	if prefix, ok := AddressRoute(r.Target, route); ok {
		named := strings.TrimPrefix(r.Target, prefix)
		if u, err := url.PathUnescape(named); err == nil {
			named = u
		}
		if norm, err := suppression.Normalize(named); err == nil && norm == addr || strings.EqualFold(named, addr) {
			return prefix + events.Erased, true
		}
	}
	// The path's segments: an address is one of them, whole.
	segs := strings.Split(r.Target, "/")
	hit := false
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil {
			continue
		}
		if norm, err := suppression.Normalize(u); err == nil && norm == addr || strings.EqualFold(u, addr) {
			segs[i], hit = events.Erased, true
		}
	}
	return strings.Join(segs, "/"), hit
}

// AddressRoute splits path, of a route whose last parameter is :address,
// into what comes before the address (with its slash) and reports true;
// false for another route. The address is all the rest: a local part may
// hold a '/' (decoded from %2F).
func AddressRoute(path, route string) (prefix string, ok bool) {
	if !strings.HasSuffix(route, "/:address") {
		return "", false
	}
	n := strings.Count(route, "/")
	segs := strings.SplitN(path, "/", n+1)
	if len(segs) != n+1 {
		return "", false
	}
	return strings.Join(segs[:n], "/") + "/", true
}
