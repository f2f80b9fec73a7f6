package suppression

import (
	"encoding/binary"
	"errors"
	"slices"
	"time"
)

// The compact encoding of an entry: the bbolt backend's values and the
// CSV import's sort files. Tenant and scope are in the key, and the
// reason too (as the same code). Version 1:
//
//	byte     1 (the version)
//	byte     reason code (reasonCodes)
//	varint   seconds since 1970 (UTC)
//	uvarint  nanoseconds
//	uvarint  length, bytes   for each of address, channel, message id
//	uvarint  length, bytes   link (Entry.Link), only when not empty
//
// The link came later and is written only when there is one, so values
// written before it read as they did (no link: no undo), and a value
// without one is byte for byte what it was.
//
// Version 2, only for an entry with Evidence (soft bounces that
// escalated), is version 1 with the link always written (maybe empty),
// then:
//
//	uvarint  number of bounces, then for each:
//	varint   seconds, uvarint nanoseconds
//	uvarint  length, bytes   for each of message id, status, reason,
//	                         diagnostic, channel
//
// About 40 bytes plus the strings, against about 150 for JSON: at ten
// million entries that is the difference between a file that stays in the
// page cache and one that does not.
const (
	valueV1 = 1
	valueV2 = 2
)

var reasonCodes = []Reason{1: Unsubscribe, 2: Bounce, 3: Complaint, 4: Manual, 5: Import}

// ErrCorrupt is DecodeEntry's error for bytes that are not an entry.
var ErrCorrupt = errors.New("corrupt value")

// reasonCode is r's code, in values and keys. Callers have checked r.
func reasonCode(r Reason) byte { return byte(slices.Index(reasonCodes, r)) }

func appendString(v []byte, s string) []byte {
	v = binary.AppendUvarint(v, uint64(len(s)))
	return append(v, s...)
}

func appendTime(v []byte, t time.Time) []byte {
	v = binary.AppendVarint(v, t.Unix())
	return binary.AppendUvarint(v, uint64(t.Nanosecond()))
}

// EncodeEntry returns e in the compact encoding. e.Reason must be valid.
func EncodeEntry(e Entry) []byte {
	code := reasonCode(e.Reason) // prepare checked it
	v := make([]byte, 0, 2+2*binary.MaxVarintLen64+4+len(e.Address)+len(e.Channel)+len(e.MessageID)+len(e.Link))
	version := byte(valueV1)
	if e.Evidence != nil && len(*e.Evidence) > 0 {
		version = valueV2
	}
	v = append(v, version, code)
	v = appendTime(v, e.Time)
	for _, s := range []string{e.Address, e.Channel, e.MessageID} {
		v = appendString(v, s)
	}
	if e.Link != "" || version == valueV2 {
		v = appendString(v, e.Link)
	}
	if version == valueV2 {
		v = binary.AppendUvarint(v, uint64(len(*e.Evidence)))
		for _, b := range *e.Evidence {
			v = appendTime(v, b.Time)
			for _, s := range []string{b.MessageID, b.Status, b.Reason, b.Diagnostic, b.Channel} {
				v = appendString(v, s)
			}
		}
	}
	return v
}

// valueReader reads the fields of a value, remembering the first error.
type valueReader struct {
	v   []byte
	bad bool
}

func (r *valueReader) uvarint() uint64 {
	x, n := binary.Uvarint(r.v)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.v = r.v[n:]
	return x
}

func (r *valueReader) time() time.Time {
	sec, n := binary.Varint(r.v)
	if n <= 0 {
		r.bad = true
		return time.Time{}
	}
	r.v = r.v[n:]
	nsec := r.uvarint()
	if nsec >= 1e9 {
		r.bad = true
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (r *valueReader) string() string {
	l := r.uvarint()
	if r.bad || l > uint64(len(r.v)) {
		r.bad = true
		return ""
	}
	s := string(r.v[:l])
	r.v = r.v[l:]
	return s
}

// DecodeEntry reads what EncodeEntry wrote: every field but Tenant and
// List, which the key holds.
func DecodeEntry(v []byte) (Entry, error) {
	var e Entry
	if len(v) < 2 || v[0] != valueV1 && v[0] != valueV2 || int(v[1]) >= len(reasonCodes) || v[1] == 0 {
		return e, ErrCorrupt
	}
	version := v[0]
	e.Reason = reasonCodes[v[1]]
	r := &valueReader{v: v[2:]}
	e.Time = r.time()
	e.Address, e.Channel, e.MessageID = r.string(), r.string(), r.string()
	// No link in version 1: written by another way in, or before links
	// were kept.
	if version == valueV2 || len(r.v) > 0 {
		e.Link = r.string()
	}
	if version == valueV2 {
		n := r.uvarint()
		if n > maxEvidence {
			return e, ErrCorrupt
		}
		evidence := make([]SoftBounce, 0, n)
		for range n {
			b := SoftBounce{Time: r.time()}
			b.MessageID, b.Status, b.Reason, b.Diagnostic, b.Channel = r.string(), r.string(), r.string(), r.string(), r.string()
			evidence = append(evidence, b)
		}
		e.Evidence = &evidence
	}
	if r.bad {
		return Entry{}, ErrCorrupt
	}
	return e, nil
}

// Code is r's code in stored entries (and the order of reasons in keys);
// 0 for a reason that is not one.
func (r Reason) Code() byte { return reasonCode(r) }

// ReasonOfCode is the reason of code c, false when c is none.
func ReasonOfCode(c byte) (Reason, bool) {
	if c == 0 || int(c) >= len(reasonCodes) {
		return "", false
	}
	return reasonCodes[c], true
}
