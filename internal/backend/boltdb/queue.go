package boltdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/txn"
)

// queueRows is queue.Rows in bbolt. A message's record and recipients
// are rows of one bucket, the chunks of its inline body of another, under
// keys that start with its id (store.BucketQueue and BucketQueueBodies,
// the layout of schema version 6 in internal/store/queuelayout.go), so
// that a group commit's rows share leaf pages. The schedule,
// be64(due unix ns)+id+be32(index) → recipient domain, is apart, in time
// order. A job stays in the schedule until its outcome
// is recorded, so an attempt cut short by a crash is made again. Bodies
// larger than the spool's InlineMax are files beside the database
// (queue.Spool), fsynced with their directory before the record commits.
type queueRows struct{ tx *bolt.Tx }

// Queue implements backend.Tx.
func (t *Tx) Queue() queue.Rows { return queueRows{t.tx} }

// Queue returns the queue kept in db.
func Queue(db *store.DB) *queue.Records {
	return queue.NewRecords(txn.Narrow(New(db), func(t backend.Tx) queue.Tx { return t }))
}

// idOrderedFill is how full bbolt packs the pages of the queue bucket.
// Its keys start with a message id, and ids sort by acceptance time, so
// new keys land at the right edge: bbolt's default of one half suits
// random inserts and here leaves every page half empty, which made each
// group commit write about two more pages. Not 1: Record rewrites a row a
// little longer (state, reply) shortly after Add wrote it.
const idOrderedFill = 0.9

func schedKey(due time.Time, id string, idx int) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(due.UnixNano()))
	k = append(k, id...)
	return binary.BigEndian.AppendUint32(k, uint32(idx))
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

func (r queueRows) bucket() *bolt.Bucket {
	b := r.tx.Bucket(store.BucketQueue)
	if r.tx.Writable() {
		b.FillPercent = idOrderedFill
	}
	return b
}

func (r queueRows) bodies() *bolt.Bucket {
	b := r.tx.Bucket(store.BucketQueueBodies)
	if r.tx.Writable() {
		// Chunks are written once, in id order, then deleted: a page
		// never needs room for a row to grow.
		b.FillPercent = 1
	}
	return b
}

// validID refuses an id the layout cannot keep apart from its neighbours'
// (internal/ids makes none such).
func validID(id string) error {
	if id == "" || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("message id %q: empty or with a NUL byte", id)
	}
	return nil
}

func (r queueRows) Message(id string) (queue.Message, bool, error) {
	var m queue.Message
	raw := r.bucket().Get(store.RecordKey(id))
	if raw == nil {
		return m, false, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, false, fmt.Errorf("message %q: %w", id, err)
	}
	return m, true, nil
}

func (r queueRows) PutMessage(m *queue.Message) error {
	if err := validID(m.ID); err != nil {
		return err
	}
	head := *m
	head.Recipients, head.Body = nil, nil
	return putJSON(r.bucket(), store.RecordKey(m.ID), head)
}

// seekAfter puts c on the first key of the messages with ids after after
// ("": the first message).
func seekAfter(c *bolt.Cursor, after string) ([]byte, []byte) {
	if after == "" {
		return c.First()
	}
	return c.Seek(store.After(after))
}

// nextRecord moves c from k to the first record at or after it, over
// the recipients between records.
func nextRecord(c *bolt.Cursor, k, v []byte) ([]byte, []byte) {
	for k != nil {
		id, kind, _, ok := store.ParseQueueKey(k)
		switch {
		case ok && kind == store.KindRecord:
			return k, v
		case ok:
			k, v = c.Seek(store.After(string(id)))
		default:
			k, v = c.Next()
		}
	}
	return nil, nil
}

// records calls fn with each record after after, in id order, until fn
// returns false; the rows between records are skipped by seeking.
func (r queueRows) records(after string, fn func(id string, raw []byte) bool) {
	c := r.bucket().Cursor()
	k, v := seekAfter(c, after)
	for k, v = nextRecord(c, k, v); k != nil; k, v = nextRecord(c, k, v) {
		id, _, _, _ := store.ParseQueueKey(k)
		if !fn(string(id), v) {
			return
		}
		k, v = c.Next()
	}
}

func (r queueRows) Messages(after string, limit int) ([]queue.Message, error) {
	var out []queue.Message
	var err error
	r.records(after, func(id string, raw []byte) bool {
		if len(out) == limit {
			return false
		}
		var m queue.Message
		if err = json.Unmarshal(raw, &m); err != nil {
			err = fmt.Errorf("message %q: %w", id, err)
			return false
		}
		out = append(out, m)
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (r queueRows) DeleteMessage(id string) error {
	if err := deletePrefix(r.bodies(), store.MessagePrefix(id)); err != nil {
		return err
	}
	return deletePrefix(r.bucket(), store.MessagePrefix(id))
}

// deletePrefix deletes every key of b that starts with pfx.
func deletePrefix(b *bolt.Bucket, pfx []byte) error {
	c := b.Cursor()
	// Seek again after each Delete: bbolt's cursor may skip the key after
	// a deleted one.
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Seek(pfx) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (r queueRows) TenantMessages(tenant, after string, limit int) ([]queue.Message, string, error) {
	var out []queue.Message
	var err error
	next, last, scanned := "", "", 0
	r.records(after, func(id string, raw []byte) bool {
		if scanned == scanLimit || len(out) == limit {
			next = last
			return false
		}
		scanned++
		last = id
		var m queue.Message
		if err = json.Unmarshal(raw, &m); err != nil {
			err = fmt.Errorf("message %q: %w", id, err)
			return false
		}
		if m.Tenant == tenant {
			out = append(out, m)
		}
		return true
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

func (r queueRows) Recipient(id string, idx int) (queue.Recipient, bool, error) {
	var rc queue.Recipient
	raw := r.bucket().Get(store.RecipientKey(id, idx))
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
	c := r.bucket().Cursor()
	pfx := append(store.MessagePrefix(id), store.KindRecipient)
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		var rc queue.Recipient
		if err := json.Unmarshal(v, &rc); err != nil {
			return nil, fmt.Errorf("delivery %q: %w", k, err)
		}
		out = append(out, rc)
	}
	return out, nil
}

func (r queueRows) PutRecipient(id string, rc *queue.Recipient) error {
	if err := validID(id); err != nil {
		return err
	}
	return putJSON(r.bucket(), store.RecipientKey(id, rc.Index), rc)
}

// scanLimit bounds the rows Mentioning and BodiesMentioning examine per
// call, so that an erasure's transactions stay short however few rows
// match.
const scanLimit = 10000

func (r queueRows) Mentioning(addr string, after *queue.Cursor, limit int) ([]queue.Delivery, *queue.Cursor, error) {
	var out []queue.Delivery
	c := r.bucket().Cursor()
	var k, v []byte
	if after == nil {
		k, v = c.First()
	} else {
		from := store.RecipientKey(after.MessageID, after.Index)
		if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
			k, v = c.Next()
		}
	}
	var last *queue.Cursor
	for scanned := 0; k != nil; {
		id, kind, idx, ok := store.ParseQueueKey(k)
		switch {
		case !ok:
			k, v = c.Next()
			continue
		case kind != store.KindRecipient:
			// Over the message's record to its recipients.
			k, v = c.Seek(store.RecipientKey(string(id), 0))
			continue
		}
		if scanned == scanLimit || len(out) == limit {
			return out, last, nil
		}
		scanned++
		last = &queue.Cursor{MessageID: string(id), Index: idx}
		if events.ContainsFold(v, addr) {
			var rc queue.Recipient
			if err := json.Unmarshal(v, &rc); err != nil {
				return nil, nil, fmt.Errorf("delivery %q: %w", k, err)
			}
			out = append(out, queue.Delivery{MessageID: last.MessageID, Recipient: rc})
		}
		k, v = c.Next()
	}
	return out, nil, nil
}

func (r queueRows) Body(id string) ([]byte, bool, error) {
	c := r.bodies().Cursor()
	pfx := append(store.MessagePrefix(id), store.KindBody)
	// Sized first, so that the copy (v is only valid inside the
	// transaction) is one allocation.
	n, found := 0, false
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		n, found = n+len(v), true
	}
	if !found {
		return nil, false, nil
	}
	body := make([]byte, 0, n)
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		body = append(body, v...)
	}
	return body, true, nil
}

func (r queueRows) PutBody(id string, body []byte) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := r.DeleteBody(id); err != nil {
		return err
	}
	return store.PutBody(r.bodies(), id, body)
}

func (r queueRows) DeleteBody(id string) error {
	return deletePrefix(r.bodies(), append(store.MessagePrefix(id), store.KindBody))
}

func (r queueRows) BodiesMentioning(addr, after string, limit int) ([]string, string, error) {
	var out []string
	c := r.bodies().Cursor()
	last := ""
	k, _ := seekAfter(c, after)
	for scanned := 0; k != nil; {
		id, _, _, ok := store.ParseQueueKey(k)
		if !ok {
			k, _ = c.Next()
			continue
		}
		if scanned == scanLimit || len(out) == limit {
			return out, last, nil
		}
		scanned++
		last = string(id)
		body, _, err := r.Body(last)
		if err != nil {
			return nil, "", err
		}
		if events.ContainsFold(body, addr) {
			out = append(out, last)
		}
		k, _ = c.Seek(store.After(last))
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

// Attempt implements queue.Rows with the rows' own reads: they cost no
// more together.
func (r queueRows) Attempt(id string, idx int, withBody bool) (m queue.Message, rc queue.Recipient, body []byte, rec, ok bool, err error) {
	if m, rec, err = r.Message(id); err != nil || !rec {
		return m, rc, nil, rec, false, err
	}
	if rc, ok, err = r.Recipient(id, idx); err != nil || !ok {
		return m, rc, nil, true, false, err
	}
	if withBody {
		if body, _, err = r.Body(id); err != nil {
			return m, rc, nil, true, false, err
		}
	}
	return m, rc, body, true, true, nil
}
