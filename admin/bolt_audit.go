package admin

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
)

// BoltAudit is the AuditLog in Heed's bbolt database: records keyed by a
// big-endian sequence number, in order.
type BoltAudit struct{ DB *store.DB }

var _ AuditLog = BoltAudit{}

// Append implements AuditLog.
func (a BoltAudit) Append(_ context.Context, r *AuditRecord) error {
	var seq uint64
	err := a.DB.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketAudit)
		b.FillPercent = 0.95 // keys only grow
		var err error
		if seq, err = b.NextSequence(); err != nil {
			return err
		}
		rec := *r
		rec.Seq = seq
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
	})
	if err == nil {
		r.Seq = seq // the function may have run more than once: set once it committed
	}
	return err
}

// Records implements AuditLog.
func (a BoltAudit) Records(_ context.Context, tenant string, after uint64, limit int) ([]AuditRecord, error) {
	var out []AuditRecord
	err := a.DB.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketAudit).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < limit; k, v = c.Next() {
			var r AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("audit record %x: %w", k, err)
			}
			if tenant == "" || r.Tenant == tenant {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// Erase removes addr, a normalised address, from the audit records and
// returns how many it changed. A record names an address in its Target
// when its route ends in :address (auditTarget writes it normalised;
// records written before that hold it as sent, so it is normalised here
// to compare); other segments are compared decoded, as before.
func (a BoltAudit) Erase(_ context.Context, addr string) (int, error) {
	n := 0
	err := a.DB.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = store.Rewrite(tx.Bucket(store.BucketAudit), func(k, v []byte) ([]byte, bool, error) {
			var r AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return nil, false, fmt.Errorf("audit record %x: %w", k, err)
			}
			target, hit := eraseTarget(r, addr)
			if !hit {
				return nil, false, nil
			}
			r.Target = target
			nv, err := json.Marshal(r)
			return nv, err == nil, err
		})
		return err
	})
	return n, err
}

// eraseTarget is r's Target with addr replaced by events.Erased, and
// whether it named addr.
func eraseTarget(r AuditRecord, addr string) (string, bool) {
	_, route, _ := strings.Cut(r.Action, " ")
	if prefix, ok := addressRoute(r.Target, route); ok {
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
