package store

import (
	"bytes"
	"slices"
	"testing"
)

// TestQueueKeys: every key parses back to its message, kind and index;
// sorted, the keys of one message are adjacent and messages come in id
// order even when one id is a prefix of another; After(id) falls between
// a message's last key and the next message's first.
func TestQueueKeys(t *testing.T) {
	ids := []string{"a", "a0", "ab", "b", "06h4peda03tz5swd43d07gdw84"}
	type row struct {
		key  []byte
		id   string
		kind byte
		n    int
	}
	var rows []row
	for _, id := range ids {
		rows = append(rows, row{RecordKey(id), id, KindRecord, 0})
		for _, n := range []int{0, 1, 255, 256, 1 << 20} {
			rows = append(rows, row{RecipientKey(id, n), id, KindRecipient, n}, row{BodyKey(id, n), id, KindBody, n})
		}
	}
	for _, r := range rows {
		id, kind, n, ok := ParseQueueKey(r.key)
		if !ok || string(id) != r.id || kind != r.kind || n != r.n {
			t.Errorf("ParseQueueKey(%q) = %q %c %d %v, want %q %c %d", r.key, id, kind, n, ok, r.id, r.kind, r.n)
		}
	}
	for _, bad := range []string{"", "a", "\x00m", "a\x00", "a\x00x", "a\x00m1", "a\x00r123", "a\x00b12345"} {
		if _, _, _, ok := ParseQueueKey([]byte(bad)); ok {
			t.Errorf("ParseQueueKey(%q) parsed", bad)
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return bytes.Compare(a.key, b.key) })
	slices.Sort(ids)
	at := 0
	for i, id := range ids {
		for at < len(rows) && rows[at].id == id {
			at++
		}
		if at < len(rows) && slices.ContainsFunc(rows[at:], func(r row) bool { return r.id == id }) {
			t.Fatalf("the keys of %q are not adjacent", id)
		}
		if bytes.Compare(After(id), rows[at-1].key) <= 0 {
			t.Errorf("After(%q) is not past its last key %q", id, rows[at-1].key)
		}
		if i+1 < len(ids) && (rows[at].id != ids[i+1] || bytes.Compare(After(id), rows[at].key) > 0) {
			t.Errorf("After(%q) = %q: not at or before %q's first key %q", id, After(id), ids[i+1], rows[at].key)
		}
	}
}
