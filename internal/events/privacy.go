package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/store"
)

// Erased replaces an erased address wherever Heed keeps text about it.
const Erased = "[erased]"

// EraseText returns s with every occurrence of addr (see ContainsFold)
// replaced by Erased.
func EraseText(s, addr string) string {
	b := []byte(s)
	if !ContainsFold(b, addr) {
		return s
	}
	var out []byte
	for {
		i := indexAddr(b, addr)
		if i < 0 {
			return string(append(out, b...))
		}
		out = append(append(out, b[:i]...), Erased...)
		b = b[i+len(addr):]
	}
}

// ContainsFold reports whether b holds addr as a whole address: ASCII
// case-insensitively (addresses are quoted in any case), and not as part
// of a longer one (pat@example.net is not in xpat@example.net or
// pat@example.network). The JSON-escaped spelling counts too.
func ContainsFold(b []byte, addr string) bool {
	if indexAddr(b, addr) >= 0 {
		return true
	}
	if esc := jsonEscaped(addr); esc != addr {
		return indexAddr(b, esc) >= 0
	}
	return false
}

// jsonEscaped is addr as encoding/json writes it inside a string.
func jsonEscaped(addr string) string {
	q, err := json.Marshal(addr)
	if err != nil || len(q) < 2 {
		return addr
	}
	return string(q[1 : len(q)-1])
}

// indexAddr is the index of the first whole-address occurrence of addr in
// b, ASCII case-insensitively, or -1. Byte-wise: b need not be UTF-8.
func indexAddr(b []byte, addr string) int {
	n := len(addr)
	if n == 0 {
		return -1
	}
	first := lower(addr[0])
	for i := 0; i+n <= len(b); i++ {
		if lower(b[i]) != first || !asciiFold(b[i:i+n], addr) {
			continue
		}
		// A JSON escape (\u003c for "<", as encoding/json writes it) right
		// before is a delimiter, not the end of a longer local part.
		escaped := i >= 6 && b[i-6] == '\\' && b[i-5] == 'u'
		if i > 0 && localChar(b[i-1]) && !escaped {
			continue
		}
		if end := i + n; end < len(b) && (domainChar(b[end]) || b[end] == '.' && end+1 < len(b) && domainChar(b[end+1])) {
			continue
		}
		return i
	}
	return -1
}

// asciiFold reports whether b and s are equal but for ASCII case (never
// folding other letters onto ASCII ones, as the Kelvin sign onto K).
func asciiFold(b []byte, s string) bool {
	for i := range len(s) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// localChar reports whether c may be in the local part of an address
// (RFC 5322 atext and the dot), so a match preceded by it is inside a
// longer address.
func localChar(c byte) bool {
	return domainChar(c) || c >= 0x80 || strings.IndexByte("!#$%&'*+/=?^_`{|}~.", c) >= 0
}

// domainChar reports whether c may be in a domain label.
func domainChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c >= 0x80
}

// About returns every event, of any tenant, that mentions addr (its
// recipient, or a reply quoting it): a privacy export. It reads the whole
// log.
func (l BoltLog) About(_ context.Context, addr string) ([]Event, error) {
	var out []Event
	err := l.DB.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			if !ContainsFold(v, addr) {
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
// returns how many it changed. The log is searched in a read transaction
// and the matches rewritten in transactions of at most 1,000, so a large
// log does not hold the writers (and the SMTP 250s behind them) up.
func (l BoltLog) Erase(_ context.Context, addr string) (int, error) {
	var keys [][]byte
	err := l.DB.View(func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketEvents).ForEach(func(k, v []byte) error {
			if ContainsFold(v, addr) {
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		n := 0
		err := l.DB.Update(func(tx *bolt.Tx) error {
			n = 0
			b := tx.Bucket(store.BucketEvents)
			for _, k := range batch {
				v := b.Get(k)
				if v == nil || !ContainsFold(v, addr) {
					continue // purged or changed meanwhile
				}
				var ev Event
				if err := json.Unmarshal(v, &ev); err != nil {
					return fmt.Errorf("event %x: %w", k, err)
				}
				d := &ev.Data
				if strings.EqualFold(d.Recipient, addr) {
					d.Recipient = Erased
				}
				d.Reply, d.Reason = EraseText(d.Reply, addr), EraseText(d.Reason, addr)
				nv, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				if err := b.Put(k, nv); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
