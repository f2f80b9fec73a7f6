package boltdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
)

// queueRows is queue.Rows in bbolt, in the layout internal/queue/bolt.go
// had (no data migration): messages id→Message JSON (without recipients);
// deliveries id+be32(index)→Recipient JSON; bodies id→inline body;
// schedule be64(due unix ns)+id+be32(index)→recipient domain. A job stays
// in the schedule until its outcome is recorded, so an attempt cut short
// by a crash is made again. Bodies larger than the spool's InlineMax are
// files beside the database (queue.Spool), fsynced with their directory
// before the record commits.
type queueRows struct{ tx *bolt.Tx }

// Queue implements backend.Tx.
func (t *Tx) Queue() queue.Rows { return queueRows{t.tx} }

// Queue returns the queue kept in db.
func Queue(db *store.DB) *queue.Records {
	return queue.NewRecords(txn.Narrow(New(db), func(t backend.Tx) queue.Tx { return t }))
}

// idOrderedFill is how full bbolt packs the pages of the messages and
// deliveries buckets. Their keys start with a message id, and ids sort by
// acceptance time, so new keys land at the right edge: bbolt's default of
// one half suits random inserts and here leaves every page half empty,
// which made each group commit write about two more pages. Not 1: Record
// rewrites a row a little longer (state, reply) shortly after Add wrote it.
const idOrderedFill = 0.9

func rowKey(id string, idx int) []byte {
	return binary.BigEndian.AppendUint32([]byte(id), uint32(idx))
}

func schedKey(due time.Time, id string, idx int) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(due.UnixNano()))
	return append(k, rowKey(id, idx)...)
}

func parseSchedKey(k, v []byte) (queue.Job, bool) {
	if len(k) < 8+4+1 {
		return queue.Job{}, false
	}
	return queue.Job{
		MessageID: string(k[8 : len(k)-4]),
		Index:     int(binary.BigEndian.Uint32(k[len(k)-4:])),
		Due:       time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))),
		Domain:    string(v),
	}, true
}

func (r queueRows) messages() *bolt.Bucket {
	b := r.tx.Bucket(store.BucketMessages)
	if r.tx.Writable() {
		b.FillPercent = idOrderedFill
	}
	return b
}

func (r queueRows) deliveries() *bolt.Bucket {
	b := r.tx.Bucket(store.BucketDeliveries)
	if r.tx.Writable() {
		b.FillPercent = idOrderedFill
	}
	return b
}

func (r queueRows) Message(id string) (queue.Message, bool, error) {
	var m queue.Message
	raw := r.messages().Get([]byte(id))
	if raw == nil {
		return m, false, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, false, fmt.Errorf("message %q: %w", id, err)
	}
	return m, true, nil
}

func (r queueRows) PutMessage(m *queue.Message) error {
	head := *m
	head.Recipients, head.Body = nil, nil
	return putJSON(r.messages(), []byte(m.ID), head)
}

func (r queueRows) Messages(after string, limit int) ([]queue.Message, error) {
	var out []queue.Message
	c := r.messages().Cursor()
	k, v := c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	for ; k != nil && len(out) < limit; k, v = c.Next() {
		var m queue.Message
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, fmt.Errorf("message %q: %w", k, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func (r queueRows) DeleteMessage(id string) error {
	k := []byte(id)
	if err := r.messages().Delete(k); err != nil {
		return err
	}
	if err := r.tx.Bucket(store.BucketBodies).Delete(k); err != nil {
		return err
	}
	c := r.deliveries().Cursor()
	for rk, _ := c.Seek(k); rk != nil && len(rk) == len(k)+4 && bytes.HasPrefix(rk, k); rk, _ = c.Seek(k) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (r queueRows) TenantMessages(tenant, after string, limit int) ([]queue.Message, string, error) {
	var out []queue.Message
	c := r.messages().Cursor()
	k, v := c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	for scanned := 0; k != nil; k, v = c.Next() {
		if scanned == scanLimit || len(out) == limit {
			pk, _ := c.Prev()
			return out, string(pk), nil
		}
		scanned++
		var m queue.Message
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, "", fmt.Errorf("message %q: %w", k, err)
		}
		if m.Tenant == tenant {
			out = append(out, m)
		}
	}
	return out, "", nil
}

func (r queueRows) Recipient(id string, idx int) (queue.Recipient, bool, error) {
	var rc queue.Recipient
	raw := r.deliveries().Get(rowKey(id, idx))
	if raw == nil {
		return rc, false, nil
	}
	if err := json.Unmarshal(raw, &rc); err != nil {
		return rc, false, fmt.Errorf("delivery %q/%d: %w", id, idx, err)
	}
	return rc, true, nil
}

func (r queueRows) Recipients(id string) ([]queue.Recipient, error) {
	var out []queue.Recipient
	c := r.deliveries().Cursor()
	pfx := []byte(id)
	for k, v := c.Seek(pfx); k != nil && len(k) == len(pfx)+4 && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		var rc queue.Recipient
		if err := json.Unmarshal(v, &rc); err != nil {
			return nil, fmt.Errorf("delivery %q: %w", k, err)
		}
		out = append(out, rc)
	}
	return out, nil
}

func (r queueRows) PutRecipient(id string, rc *queue.Recipient) error {
	return putJSON(r.deliveries(), rowKey(id, rc.Index), rc)
}

// scanLimit bounds the rows Mentioning and BodiesMentioning examine per
// call, so that an erasure's transactions stay short however few rows
// match.
const scanLimit = 10000

func (r queueRows) Mentioning(addr string, after *queue.Cursor, limit int) ([]queue.Delivery, *queue.Cursor, error) {
	var out []queue.Delivery
	c := r.deliveries().Cursor()
	var k, v []byte
	if after == nil {
		k, v = c.First()
	} else {
		from := rowKey(after.MessageID, after.Index)
		if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
			k, v = c.Next()
		}
	}
	for scanned := 0; k != nil; k, v = c.Next() {
		if len(k) < 5 {
			continue // not a delivery row's key
		}
		if scanned == scanLimit || len(out) == limit {
			return out, cursorBefore(c), nil
		}
		scanned++
		if !events.ContainsFold(v, addr) {
			continue
		}
		var rc queue.Recipient
		if err := json.Unmarshal(v, &rc); err != nil {
			return nil, nil, fmt.Errorf("delivery %q: %w", k, err)
		}
		out = append(out, queue.Delivery{MessageID: string(k[:len(k)-4]), Recipient: rc})
	}
	return out, nil, nil
}

// cursorBefore is the cursor of the row before c's (the last one
// examined): the next call goes on with c's row.
func cursorBefore(c *bolt.Cursor) *queue.Cursor {
	k, _ := c.Prev()
	return &queue.Cursor{MessageID: string(k[:len(k)-4]), Index: int(binary.BigEndian.Uint32(k[len(k)-4:]))}
}

func (r queueRows) Body(id string) ([]byte, bool, error) {
	v := r.tx.Bucket(store.BucketBodies).Get([]byte(id))
	if v == nil {
		return nil, false, nil
	}
	return bytes.Clone(v), true, nil // v is only valid inside the transaction
}

func (r queueRows) PutBody(id string, body []byte) error {
	return r.tx.Bucket(store.BucketBodies).Put([]byte(id), body)
}

func (r queueRows) DeleteBody(id string) error {
	return r.tx.Bucket(store.BucketBodies).Delete([]byte(id))
}

func (r queueRows) BodiesMentioning(addr, after string, limit int) ([]string, string, error) {
	var out []string
	c := r.tx.Bucket(store.BucketBodies).Cursor()
	k, v := c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	for scanned := 0; k != nil; k, v = c.Next() {
		if scanned == scanLimit || len(out) == limit {
			pk, _ := c.Prev()
			return out, string(pk), nil
		}
		scanned++
		if events.ContainsFold(v, addr) {
			out = append(out, string(k))
		}
	}
	return out, "", nil
}

func (r queueRows) Schedule(j queue.Job) error {
	return r.tx.Bucket(store.BucketSchedule).Put(schedKey(j.Due, j.MessageID, j.Index), []byte(j.Domain))
}

func (r queueRows) Unschedule(j queue.Job) error {
	k := schedKey(j.Due, j.MessageID, j.Index)
	forget(r.tx.DB(), k)
	return r.tx.Bucket(store.BucketSchedule).Delete(k)
}

func (r queueRows) Due(max int, fn func(queue.Job) bool) error {
	memo := memoOf(r.tx.DB())
	memo.Lock()
	defer memo.Unlock()
	if memo.m == nil || len(memo.m) > 4*max {
		// Entries whose outcome was recorded are forgotten by Unschedule;
		// starting afresh once the map holds four scans' worth bounds
		// what a rolled-back Unschedule or an odd key leaves.
		memo.m = make(map[string]queue.Job, max)
	}
	c := r.tx.Bucket(store.BucketSchedule).Cursor()
	scanned := 0
	for k, v := c.First(); k != nil && scanned < max; k, v = c.Next() {
		scanned++
		j, ok := memo.m[string(k)]
		if !ok {
			if j, ok = parseSchedKey(k, v); !ok {
				continue
			}
			memo.m[string(k)] = j
		}
		if !fn(j) {
			return nil
		}
	}
	return nil
}

func (r queueRows) Depth() (int, error) {
	return r.tx.Bucket(store.BucketSchedule).Stats().KeyN, nil
}

// dueMemo memoises the schedule entries Due parsed, by key: an entry in
// flight stays at the head of the schedule until its outcome is
// recorded, and every scan passes it again (under load, each message's
// entry is read a few dozen times), so parsing it afresh each time made
// most of the relay's allocations. Kept per database, as the watchers
// are, since the backend holds no state of its own; Unschedule forgets
// an entry, so nothing of an erased recipient stays in it.
type dueMemo struct {
	sync.Mutex
	m map[string]queue.Job
}

var memos struct {
	sync.Mutex
	m map[*bolt.DB]*dueMemo
}

func memoOf(db *bolt.DB) *dueMemo {
	memos.Lock()
	defer memos.Unlock()
	if memos.m == nil {
		memos.m = make(map[*bolt.DB]*dueMemo)
	}
	d := memos.m[db]
	if d == nil {
		d = &dueMemo{}
		memos.m[db] = d
	}
	return d
}

func forget(db *bolt.DB, k []byte) {
	memo := memoOf(db)
	memo.Lock()
	delete(memo.m, string(k))
	memo.Unlock()
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}
