package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/store"
)

// Erased replaces an erased address wherever Heed keeps text about it.
const Erased = "[erased]"

// EraseText returns s with every occurrence of addr replaced by Erased,
// matching ASCII case-insensitively (addresses are stored as given and
// quoted in remote replies in any case).
func EraseText(s, addr string) string {
	if addr == "" || !ContainsFold([]byte(s), addr) {
		return s
	}
	var b strings.Builder
	ls, la := strings.ToLower(s), strings.ToLower(addr)
	for {
		i := strings.Index(ls, la)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(Erased)
		s, ls = s[i+len(addr):], ls[i+len(la):]
	}
}

// ContainsFold reports whether b holds addr, ASCII case-insensitively.
func ContainsFold(b []byte, addr string) bool {
	if len(addr) == 0 || len(b) < len(addr) {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(addr)))
}

// mentions is a cheap first look: does the stored value hold addr at all?
func mentions(v []byte, addr string) bool { return ContainsFold(v, addr) }

// About returns every event, of any tenant, that mentions addr (its
// recipient, or a reply quoting it): a privacy export. It reads the whole
// log.
func (l BoltLog) About(_ context.Context, addr string) ([]Event, error) {
	var out []Event
	err := l.DB.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			if !mentions(v, addr) {
				return nil
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event %x: %w", k, err)
			}
			out = append(out, ev)
			return nil
		})
	})
	return out, err
}

// Erase removes addr from every event that mentions it (recipient, reply,
// reason), keeping the events (what happened, when, to which message), and
// returns how many it changed.
func (l BoltLog) Erase(_ context.Context, addr string) (int, error) {
	n := 0
	err := l.DB.Update(func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(store.BucketEvents)
		type kv struct{ k, v []byte }
		var changes []kv
		err := b.ForEach(func(k, v []byte) error {
			if !mentions(v, addr) {
				return nil
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event %x: %w", k, err)
			}
			d := &ev.Data
			d.Recipient, d.Reply, d.Reason = EraseText(d.Recipient, addr), EraseText(d.Reply, addr), EraseText(d.Reason, addr)
			nv, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			changes = append(changes, kv{bytes.Clone(k), nv})
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range changes {
			if err := b.Put(c.k, c.v); err != nil {
				return err
			}
		}
		n = len(changes)
		return nil
	})
	return n, err
}
