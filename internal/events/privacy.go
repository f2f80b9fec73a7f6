package events

import (
	"context"
	"encoding/json"
	"strings"
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

// scanPage is how many events one transaction of About and Erase reads
// or rewrites, so that a large log does not hold the writers (and the
// SMTP 250s behind them) up.
const scanPage = 1000

// About returns every event, of any tenant, that mentions addr (its
// recipient, or a reply quoting it): a privacy export. It reads the whole
// log, a page per transaction.
func (l *Log) About(ctx context.Context, addr string) ([]Event, error) {
	var out []Event
	for after := uint64(0); ; {
		var page []Event
		err := l.tx.View(ctx, func(tx TxLog) error {
			var err error
			page, err = tx.Mentioning(addr, after, scanPage)
			return err
		})
		if err != nil {
			return out, err
		}
		out = append(out, page...)
		if len(page) < scanPage {
			return out, nil
		}
		after = page[len(page)-1].Seq
	}
}

// Erase removes addr from every event that mentions it (recipient, reply,
// reason), keeping the events (what happened, when, to which message), and
// returns how many it changed. The matches are found and rewritten a page
// at a time, each page in a transaction of its own.
func (l *Log) Erase(ctx context.Context, addr string) (int, error) {
	total := 0
	for after := uint64(0); ; {
		n, last, found := 0, uint64(0), 0
		err := l.tx.Update(ctx, func(tx TxLog) error {
			n = 0
			page, err := tx.Mentioning(addr, after, scanPage)
			if err != nil {
				return err
			}
			found = len(page)
			for _, ev := range page {
				last = ev.Seq
				d := &ev.Data
				if strings.EqualFold(d.Recipient, addr) {
					d.Recipient = Erased
				}
				d.Reply, d.Reason = EraseText(d.Reply, addr), EraseText(d.Reason, addr)
				ok, err := tx.Replace(ev)
				if err != nil {
					return err
				}
				if ok {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if found < scanPage {
			return total, nil
		}
		after = last
	}
}
