package boltdb_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
)

// v5Queue is a queue as schema versions 2 to 5 kept it, written here in
// their layout (internal/queue/bolt.go's, then this package's until
// version 6): messages id → record JSON; deliveries id+be32(index) →
// recipient JSON; bodies id → body; schedule be64(due)+id+be32(index) →
// domain.
type v5Queue struct {
	msgs   []*queue.Message
	bodies map[string][]byte // the bodies kept in the database
}

// bulkMessages is enough messages that their rows take several of the
// upgrade's transactions.
const bulkMessages = 6000

func newV5Queue(now time.Time) *v5Queue {
	v := &v5Queue{bodies: map[string][]byte{}}
	add := func(m *queue.Message, body []byte) {
		m.ID = ids.New(now.Add(time.Duration(len(v.msgs)) * time.Millisecond))
		m.Tenant, m.List, m.From, m.ReceivedAt = "t1", "default", "app@t1.test", now
		if body != nil {
			m.Inline = true
			v.bodies[m.ID] = body
		}
		for i := range m.Recipients {
			m.Recipients[i].Index = i
			if !m.Recipients[i].State.Final() {
				m.Pending++
			}
		}
		v.msgs = append(v.msgs, m)
	}
	long := []byte(strings.Repeat("a line of a long body, over several chunks\r\n", 200))
	// Half delivered: one recipient done, one due.
	add(&queue.Message{Recipients: []queue.Recipient{
		{Address: "done@example.net", State: queue.Delivered, Attempts: 1, LastReply: "250 ok"},
		{Address: "due@example.net", State: queue.Queued},
	}}, long)
	// Deferred, with an empty body.
	add(&queue.Message{Recipients: []queue.Recipient{
		{Address: "later@example.org", State: queue.Deferred, Attempts: 2, LastReply: "451 try later", NextAttempt: now},
	}}, []byte{})
	// Finished: no body, nothing due.
	add(&queue.Message{Recipients: []queue.Recipient{{Address: "gone@example.net", State: queue.Delivered}}}, nil)
	m := v.msgs[len(v.msgs)-1]
	m.Inline, m.Pending = true, 0
	// A body in a spool file: only its record and recipient are here.
	add(&queue.Message{Recipients: []queue.Recipient{{Address: "big@example.net", State: queue.Queued}}}, nil)
	for i := range bulkMessages {
		add(&queue.Message{Recipients: []queue.Recipient{{Address: fmt.Sprintf("r%d@example.com", i), State: queue.Queued}}},
			[]byte(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)))
	}
	return v
}

// write makes the database file at path, marked with schema version
// (5, or 6 for an upgrade that was cut short after marking the file).
func (v *v5Queue) write(t *testing.T, path string, version byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := map[string]*bolt.Bucket{}
		for _, name := range []string{"meta", "messages", "deliveries", "bodies", "schedule"} {
			if b[name], err = tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := b["meta"].Put([]byte("schema_version"), []byte{version}); err != nil {
			return err
		}
		for _, m := range v.msgs {
			head := *m
			head.Recipients = nil
			raw, _ := json.Marshal(head)
			if err := b["messages"].Put([]byte(m.ID), raw); err != nil {
				return err
			}
			if body, ok := v.bodies[m.ID]; ok {
				if err := b["bodies"].Put([]byte(m.ID), body); err != nil {
					return err
				}
			}
			for _, r := range m.Recipients {
				raw, _ := json.Marshal(r)
				k := binary.BigEndian.AppendUint32([]byte(m.ID), uint32(r.Index))
				if err := b["deliveries"].Put(k, raw); err != nil {
					return err
				}
				if !r.State.Final() {
					due := binary.BigEndian.AppendUint64(nil, uint64(m.ReceivedAt.UnixNano()))
					if err := b["schedule"].Put(append(due, k...), []byte(domainOf(r.Address))); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// TestQueueUpgradedFrom5 opens a queue of schema version 5 (and one whose
// upgrade stopped after marking the file 6) with this layout: every
// message is there with its recipients' states, every due recipient is
// due, loads with its body byte for byte and is delivered to the end,
// and the old buckets are gone.
func TestQueueUpgradedFrom5(t *testing.T) {
	for _, version := range []byte{5, 6} {
		t.Run(fmt.Sprint("marked ", version), func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			old := newV5Queue(now)
			path := filepath.Join(t.TempDir(), "heed.db")
			old.write(t, path, version)
			db, err := store.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			checkUpgraded(t, db, old, now)
		})
	}
}

func checkUpgraded(t *testing.T, db *store.DB, old *v5Queue, now time.Time) {
	t.Helper()
	ctx := context.Background()
	db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{"messages", "deliveries", "bodies"} {
			if tx.Bucket([]byte(name)) != nil {
				t.Errorf("bucket %s is still there after the upgrade", name)
			}
		}
		if v := tx.Bucket(store.BucketMeta).Get([]byte("schema_version")); !bytes.Equal(v, []byte{store.SchemaVersion}) {
			t.Errorf("schema version %v after the upgrade, want %d", v, store.SchemaVersion)
		}
		return nil
	})
	if err := store.Check(db.Bolt()); err != nil {
		t.Fatal(err)
	}
	q := boltdb.Queue(db)
	due := 0
	for _, want := range old.msgs {
		got, err := q.Message(ctx, want.ID)
		if err != nil {
			t.Fatalf("message %s after the upgrade: %v", want.ID, err)
		}
		if got.Pending != want.Pending || got.Inline != want.Inline || len(got.Recipients) != len(want.Recipients) {
			t.Fatalf("message %s after the upgrade: %+v, want %+v", want.ID, got, want)
		}
		for i, r := range got.Recipients {
			if r.Address != want.Recipients[i].Address || r.State != want.Recipients[i].State || r.Attempts != want.Recipients[i].Attempts {
				t.Errorf("recipient %d of %s after the upgrade: %+v, want %+v", i, want.ID, r, want.Recipients[i])
			}
			if !r.State.Final() {
				due++
			}
		}
	}
	jobs, _, err := q.Due(ctx, now, 2*bulkMessages, nil)
	if err != nil || len(jobs) != due {
		t.Fatalf("Due after the upgrade: %d jobs, %v; want %d", len(jobs), err, due)
	}
	for _, j := range jobs {
		m, r, err := q.Load(ctx, j)
		if err != nil {
			t.Fatalf("Load %+v: %v", j, err)
		}
		if body, inline := old.bodies[j.MessageID]; inline != m.Inline || !bytes.Equal(m.Body, body) || (inline && m.Body == nil) {
			t.Fatalf("body of %s after the upgrade: %d bytes (inline %v), want %d (inline %v)", j.MessageID, len(m.Body), m.Inline, len(body), inline)
		}
		if r.Address == "" || domainOf(r.Address) != j.Domain {
			t.Fatalf("job %+v loads recipient %+v", j, r)
		}
	}
	// Deliver the special ones to the end (the bulk's bodies are checked).
	for _, j := range jobs {
		if !strings.HasSuffix(j.Domain, ".net") && !strings.HasSuffix(j.Domain, ".org") {
			continue
		}
		finished, err := q.Record(ctx, j, queue.Outcome{State: queue.Delivered, Reply: "250 ok", At: now})
		if err != nil || !finished {
			t.Fatalf("Record %+v = %v, %v; want the message finished", j, finished, err)
		}
	}
}
