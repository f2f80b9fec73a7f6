package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The queue's rows (schema version 6) are kept under keys that start
// with the message id, then a NUL byte (ids hold none: internal/ids), then
// the row's kind:
//
//	queue         id 0x00 'm'            the record (queue.Message JSON, no recipients)
//	              id 0x00 'r' be32(i)    recipient i (queue.Recipient JSON)
//	queue_bodies  id 0x00 'b' be32(n)    chunk n of a body kept in the database
//
// Keys sort by id first, and ids by acceptance time, so a group commit's
// rows land side by side at the right edge of two buckets, a message's
// record beside its recipients: versions 2 to 5 spread them over three
// (messages, deliveries, bodies), each with its own leaf and branch pages
// to rewrite.
//
// Bodies are cut into chunks because a 4 KiB body in one value does not
// fit a 4 KiB page with its header: bbolt gave each pair of bodies three
// pages of their own. Chunks pack the bodies of a commit page after page,
// and pages full to the brim (FillPercent 1 in internal/backend/boltdb),
// since a body is written once and only ever deleted. Bodies stay apart
// from the records, which Record rewrites: when a delivered message's
// body goes, its chunks' pages are freed, not rewritten around the
// records left behind (the measurements are in docs/benchmarks.md).

// BucketQueue holds the queue's records and recipients, and
// BucketQueueBodies the bodies kept in the database (package
// internal/backend/boltdb; the layout above).
var (
	BucketQueue       = []byte("queue")
	BucketQueueBodies = []byte("queue_bodies")
)

// Row kinds, the byte after the id's NUL.
const (
	KindBody      = 'b'
	KindRecord    = 'm'
	KindRecipient = 'r'
)

// BodyChunk is the size of a body's chunks: four fill a 4 KiB page
// exactly, with their keys (16 bytes of bbolt's element, 32 of key) and
// the page's header.
const BodyChunk = 972

// The buckets of versions 2 to 5 that version 6 replaced.
var (
	oldMessages   = []byte("messages")
	oldDeliveries = []byte("deliveries")
	oldBodies     = []byte("bodies")
)

// MessagePrefix is the start of every key of message id.
func MessagePrefix(id string) []byte {
	k := make([]byte, 0, len(id)+6)
	return append(append(k, id...), 0)
}

// RecordKey is the key of message id's record.
func RecordKey(id string) []byte { return append(MessagePrefix(id), KindRecord) }

// RecipientKey is the key of recipient i of message id.
func RecipientKey(id string, i int) []byte {
	return binary.BigEndian.AppendUint32(append(MessagePrefix(id), KindRecipient), uint32(i))
}

// BodyKey is the key of chunk n of message id's body.
func BodyKey(id string, n int) []byte {
	return binary.BigEndian.AppendUint32(append(MessagePrefix(id), KindBody), uint32(n))
}

// After is where the keys of the messages with ids after id begin.
func After(id string) []byte {
	k := make([]byte, 0, len(id)+1)
	return append(append(k, id...), 1)
}

// ParseQueueKey splits a queue bucket key into its message id, its kind
// and the index of a recipient or chunk; false for a key of no row.
func ParseQueueKey(k []byte) (id []byte, kind byte, n int, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i < 1 || i+2 > len(k) {
		return nil, 0, 0, false
	}
	id, kind, rest := k[:i], k[i+1], k[i+2:]
	switch {
	case kind == KindRecord && len(rest) == 0:
		return id, kind, 0, true
	case (kind == KindRecipient || kind == KindBody) && len(rest) == 4:
		return id, kind, int(binary.BigEndian.Uint32(rest)), true
	}
	return nil, 0, 0, false
}

// PutBody stores body as the chunks of message id in b, which must hold
// none of it yet. An empty body is one empty chunk, so that it is found.
func PutBody(b *bolt.Bucket, id string, body []byte) error {
	for n := 0; n == 0 || len(body) > 0; n++ {
		c := body[:min(len(body), BodyChunk)]
		if err := b.Put(BodyKey(id, n), c); err != nil {
			return err
		}
		body = body[len(c):]
	}
	return nil
}

// upgradeQueueRows and upgradeQueueBytes bound what one transaction of
// the upgrade to version 6 moves (a row or 32 MiB of bodies, whichever
// comes first), so that a large queue moves in transactions that hold
// little memory.
const (
	upgradeQueueRows  = 10000
	upgradeQueueBytes = 32 << 20
)

// upgradeQueue moves the rows of the messages, deliveries and bodies
// buckets of versions 2 to 5 into queue and queue_bodies and drops them,
// in bounded transactions. initSchema marked the file as version 6
// first, so an older build refuses it while rows are moving, and a start
// cut short goes on where it stopped: every row is in exactly one of the
// two layouts after each commit.
func upgradeQueue(b *bolt.DB) error {
	pending := false
	b.View(func(tx *bolt.Tx) error {
		pending = tx.Bucket(oldMessages) != nil || tx.Bucket(oldDeliveries) != nil || tx.Bucket(oldBodies) != nil
		return nil
	})
	for pending {
		err := b.Update(func(tx *bolt.Tx) error {
			pending = false
			left := batch{rows: upgradeQueueRows, bytes: upgradeQueueBytes}
			q, qb := tx.Bucket(BucketQueue), tx.Bucket(BucketQueueBodies)
			for _, name := range [][]byte{oldMessages, oldDeliveries, oldBodies} {
				old := tx.Bucket(name)
				if old == nil {
					continue
				}
				empty, err := moveRows(q, qb, old, name, &left)
				if err != nil {
					return fmt.Errorf("upgrading the queue to schema version 6: %s: %w", name, err)
				}
				if !empty {
					pending = true
					return nil
				}
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// batch is what one transaction of the upgrade may still move.
type batch struct{ rows, bytes int }

// moveRows moves rows of old (one of the buckets of versions 2 to 5,
// named name) into q or qb, in the layout of version 6, until old is
// empty (true) or left is spent.
func moveRows(q, qb, old *bolt.Bucket, name []byte, left *batch) (empty bool, err error) {
	c := old.Cursor()
	k, v := c.First()
	for ; k != nil && left.rows > 0 && left.bytes > 0; k, v = c.First() {
		v = bytes.Clone(v) // bbolt's values point into the mapped file
		switch {
		case bytes.Equal(name, oldMessages):
			err = q.Put(RecordKey(string(k)), v)
		case bytes.Equal(name, oldDeliveries) && len(k) > 4:
			// id + be32(index)
			err = q.Put(RecipientKey(string(k[:len(k)-4]), int(binary.BigEndian.Uint32(k[len(k)-4:]))), v)
		case bytes.Equal(name, oldBodies):
			err = PutBody(qb, string(k), v)
		default:
			return false, fmt.Errorf("key %x is no row of the queue", k)
		}
		if err != nil {
			return false, err
		}
		if err := c.Delete(); err != nil {
			return false, err
		}
		left.rows--
		left.bytes -= len(v)
	}
	return k == nil, nil
}
