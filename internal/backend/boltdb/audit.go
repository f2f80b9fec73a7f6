package boltdb

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/store"
)

// auditRows is audit.Rows in bbolt.
//
// Layout (that of admin's former BoltAudit, unchanged): store.BucketAudit
// be64(seq) → the record's JSON. The bucket's own sequence numbers the
// records: bbolt has one writer, so sequence order is commit order.
type auditRows struct{ tx *bolt.Tx }

func (r auditRows) Append(rec *audit.Record) error {
	b := r.tx.Bucket(store.BucketAudit)
	b.FillPercent = appendFill
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	rec.Seq = seq
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), v)
}

func (r auditRows) Records(tenant string, after uint64, limit int) ([]audit.Record, error) {
	var out []audit.Record
	c := r.tx.Bucket(store.BucketAudit).Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
		var rec audit.Record
		if err := json.Unmarshal(v, &rec); err != nil {
			return nil, fmt.Errorf("audit record %x: %w", k, err)
		}
		if tenant == "" || rec.Tenant == tenant {
			out = append(out, rec)
		}
	}
	return out, nil
}

func (r auditRows) Replace(rec audit.Record) error {
	b := r.tx.Bucket(store.BucketAudit)
	k := binary.BigEndian.AppendUint64(nil, rec.Seq)
	if b.Get(k) == nil {
		return nil
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}
