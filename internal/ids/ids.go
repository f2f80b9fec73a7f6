// Package ids makes the identifiers Heed hands out: time-ordered, random,
// URL-safe and unguessable (80 random bits after a 48-bit millisecond
// timestamp, the layout of a ULID), so that keys sort by creation time in
// the database and an id reveals nothing but when it was made.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// enc is lowercase Crockford-style base32 without padding: ids stay
// case-insensitive-safe in URLs and e-mail local parts.
var enc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// New returns a new 26-character id made at now.
func New(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	return enc.EncodeToString(b[:])
}

// Secret returns n random bytes encoded in the same alphabet, for tokens and
// passwords shown once.
func Secret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("ids: crypto/rand failed: " + err.Error())
	}
	return enc.EncodeToString(b)
}

// Time returns when an id made by New was made (to the millisecond);
// false for a string that is no such id.
func Time(id string) (time.Time, bool) {
	if len(id) != 26 {
		return time.Time{}, false
	}
	b, err := enc.DecodeString(id)
	if err != nil || len(b) != 16 {
		return time.Time{}, false
	}
	ms := binary.BigEndian.Uint64(b[:8]) >> 16
	return time.UnixMilli(int64(ms)), true
}
