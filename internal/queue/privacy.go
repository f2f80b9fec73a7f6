package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
)

// RecipientOf is one recipient of a message, for a privacy export.
type RecipientOf struct {
	MessageID string    `json:"message_id"`
	Tenant    string    `json:"tenant"`
	List      string    `json:"list"`
	Recipient Recipient `json:"recipient"`
}

// About returns the recipients, of any message of any tenant, that are
// addr. It reads every delivery row.
func (s *BoltStore) About(_ context.Context, addr string) ([]RecipientOf, error) {
	var out []RecipientOf
	err := s.db.View(func(tx *bolt.Tx) error {
		msgs := tx.Bucket(store.BucketMessages)
		return tx.Bucket(store.BucketDeliveries).ForEach(func(k, v []byte) error {
			if !events.ContainsFold(v, addr) {
				return nil
			}
			var r Recipient
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("delivery %q: %w", k, err)
			}
			if !strings.EqualFold(r.Address, addr) {
				return nil
			}
			id := string(k[:len(k)-4])
			var m Message
			if err := getJSON(msgs, []byte(id), &m); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			out = append(out, RecipientOf{MessageID: id, Tenant: m.Tenant, List: m.List, Recipient: r})
			return nil
		})
	})
	return out, err
}

// Erase removes addr from the queue: a recipient that is addr and not
// final yet is finished (suppressed, "erased": nothing more is sent to
// it), every recipient row that is or quotes addr is rewritten without
// it, a body no recipient needs any more is deleted, and a body still
// needed for others has addr replaced wherever it is written out. It
// returns the recipients erased.
func (s *BoltStore) Erase(ctx context.Context, addr string, spool *Spool) (int, error) {
	// The schedule memo holds message ids and recipient domains of
	// entries this may delete: nothing of an erased recipient stays.
	defer func() {
		s.seenMu.Lock()
		s.seen = nil
		s.seenMu.Unlock()
	}()
	n := 0
	var files []string // spool bodies to delete after the commit
	err := s.db.Update(func(tx *bolt.Tx) error {
		n, files = 0, nil
		msgs, rows := tx.Bucket(store.BucketMessages), tx.Bucket(store.BucketDeliveries)
		sched, bodies := tx.Bucket(store.BucketSchedule), tx.Bucket(store.BucketBodies)
		touched := map[string]bool{}
		_, err := store.Rewrite(rows, func(k, v []byte) ([]byte, bool, error) {
			if !events.ContainsFold(v, addr) {
				return nil, false, nil
			}
			var r Recipient
			if err := json.Unmarshal(v, &r); err != nil {
				return nil, false, fmt.Errorf("delivery %q: %w", k, err)
			}
			id := string(k[:len(k)-4])
			if strings.EqualFold(r.Address, addr) {
				n++
				if !r.State.Final() {
					r.State, r.Reason, r.NextAttempt = Suppressed, "erased at the recipient's request", time.Time{}
					touched[id] = true
				}
				r.Address = events.Erased
			}
			r.LastReply = events.EraseText(r.LastReply, addr)
			nv, err := json.Marshal(r)
			return nv, err == nil, err
		})
		if err != nil {
			return err
		}
		// Schedule entries of finished recipients.
		var dead [][]byte
		c := sched.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			j, ok := parseSchedKey(k, nil)
			if !ok || !touched[j.MessageID] {
				continue
			}
			var r Recipient
			if err := getJSON(rows, rowKey(j.MessageID, j.Index), &r); err == nil && r.Address == events.Erased {
				dead = append(dead, bytes.Clone(k))
			}
		}
		for _, k := range dead {
			if err := sched.Delete(k); err != nil {
				return err
			}
		}
		// Messages: pending counts, and bodies.
		_, err = store.Rewrite(msgs, func(k, v []byte) ([]byte, bool, error) {
			id := string(k)
			inline := bodies.Get(k)
			if !touched[id] && !(inline != nil && events.ContainsFold(inline, addr)) {
				return nil, false, nil
			}
			var m Message
			if err := json.Unmarshal(v, &m); err != nil {
				return nil, false, err
			}
			if touched[id] {
				pending := 0
				cur := rows.Cursor()
				for rk, rv := cur.Seek(k); rk != nil && len(rk) == len(k)+4 && bytes.HasPrefix(rk, k); rk, rv = cur.Next() {
					var r Recipient
					if err := json.Unmarshal(rv, &r); err != nil {
						return nil, false, err
					}
					if !r.State.Final() {
						pending++
					}
				}
				m.Pending = pending
			}
			if m.Pending <= 0 && !m.Inline {
				files = append(files, id) // an inline body goes below
			}
			nv, err := json.Marshal(m)
			return nv, err == nil, err
		})
		if err != nil {
			return err
		}
		// Inline bodies: drop the finished, rewrite the rest.
		var drop, scrub [][]byte
		err = bodies.ForEach(func(k, v []byte) error {
			var m Message
			if getJSON(msgs, k, &m) != nil {
				return nil
			}
			switch {
			case m.Pending <= 0 && (touched[string(k)] || events.ContainsFold(v, addr)):
				drop = append(drop, bytes.Clone(k))
			case events.ContainsFold(v, addr):
				scrub = append(scrub, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := bodies.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range scrub {
			body := []byte(events.EraseText(string(bodies.Get(k)), addr))
			if err := bodies.Put(k, body); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || spool == nil {
		return n, err
	}
	for _, id := range files {
		if err := spool.Remove(id); err != nil {
			return n, err
		}
	}
	// Bodies in spool files still needed for other recipients: rewritten
	// wherever they mention addr (not only those of its own recipients).
	return n, spool.Rewrite(func(b []byte) ([]byte, bool) {
		if !events.ContainsFold(b, addr) {
			return nil, false
		}
		return []byte(events.EraseText(string(b), addr)), true
	})
}
