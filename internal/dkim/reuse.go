package dkim

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"hash"
	"sync"
	"time"
)

// Reuse signs the copies of messages and reuses a signature for every
// copy whose signed part is the same: the copies of one transactional
// message to several recipients differ only in the Received field, which
// is not signed, so one signing serves them all.
//
// Reuse is exact, not a guess: it keys a signature on a SHA-256 over
// everything the signature depends on (RFC 6376 section 3.7) — each key's
// domain, selector, algorithm and public key, every header field Sign
// signs, raw and in order (they decide both h= and the hashed fields),
// and the body, raw — so a copy that differs in any signed byte, such as
// a per-recipient List-Unsubscribe or footer, is signed on its own. Each
// copy still goes through HeaderKeys, so a copy Sign would refuse is
// refused.
//
// A reused signature carries the t= of its first copy; ReuseFor bounds
// how old that may be, which is what makes the copies of one delivery
// attempt share a signature and a retry hours later get a fresh one.
// Copies signed at the same moment by several goroutines wait for the
// first one's signature rather than sign in parallel.
//
// The zero value is not usable; make one with NewReuse. It is safe for
// concurrent use.
type Reuse struct {
	now   func() time.Time
	ttl   time.Duration
	max   int
	mu    sync.Mutex
	sigs  map[[sha256.Size]byte]*reused
	order []slot // insertion order, oldest first, for eviction
}

// slot is a signing in the eviction order.
type slot struct {
	fp [sha256.Size]byte
	e  *reused
}

// reused is one signing, done or under way.
type reused struct {
	done chan struct{} // closed when sig and err are set
	sig  string
	err  error
	at   time.Time
}

// Reuse defaults: a minute covers the copies of one attempt, dispatched
// together; 4,096 signatures of about 700 bytes are under 3 MiB.
const (
	ReuseFor     = time.Minute
	reuseEntries = 4096
)

// NewReuse returns a Reuse on the clock now (time.Now if nil) that reuses
// a signature for ReuseFor.
func NewReuse(now func() time.Time) *Reuse {
	if now == nil {
		now = time.Now
	}
	return &Reuse{now: now, ttl: ReuseFor, max: reuseEntries, sigs: make(map[[sha256.Size]byte]*reused)}
}

// Sign is dkim.Sign, returning an earlier result for a copy whose signed
// part is the same as one signed less than ReuseFor ago. A failed signing
// is not kept: the next copy tries again.
func (r *Reuse) Sign(msg []byte, keys []Key) (string, error) {
	if _, err := HeaderKeys(msg); err != nil {
		return "", err
	}
	fp, ok := fingerprint(msg, keys)
	if !ok {
		return Sign(msg, keys) // a key Sign will refuse and name
	}
	now := r.now()
	r.mu.Lock()
	e, hit := r.sigs[fp]
	if hit && now.Sub(e.at) >= r.ttl {
		hit = false // replaced below; its slot in order is dropped in turn
	}
	if hit {
		r.mu.Unlock()
		<-e.done
		return e.sig, e.err
	}
	e = &reused{done: make(chan struct{}), at: now}
	r.sigs[fp] = e
	r.order = append(r.order, slot{fp, e})
	r.evict(now)
	r.mu.Unlock()

	e.sig, e.err = Sign(msg, keys)
	close(e.done)
	if e.err != nil {
		r.mu.Lock()
		if r.sigs[fp] == e {
			delete(r.sigs, fp)
		}
		r.mu.Unlock()
	}
	return e.sig, e.err
}

// evict drops, oldest first, the signatures that are expired or beyond
// max. r.mu is held.
func (r *Reuse) evict(now time.Time) {
	n := 0
	for ; n < len(r.order); n++ {
		o := r.order[n]
		if now.Sub(o.e.at) < r.ttl && len(r.order)-n <= r.max {
			break
		}
		if r.sigs[o.fp] == o.e { // not already replaced by a newer signing
			delete(r.sigs, o.fp)
		}
	}
	if n > 0 {
		r.order = append(r.order[:0], r.order[n:]...)
	}
}

// fingerprint hashes what the signatures of keys over msg depend on; ok
// is false for a key without a usable public half.
func fingerprint(msg []byte, keys []Key) (fp [sha256.Size]byte, ok bool) {
	h := sha256.New()
	for i := range keys {
		k := &keys[i]
		if k.Signer == nil {
			return fp, false
		}
		pub, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
		if err != nil {
			return fp, false
		}
		for _, s := range [...][]byte{[]byte(k.Domain), []byte(k.Selector), []byte(k.Algorithm), pub} {
			writeLen(h, s)
		}
	}
	body, err := walkFields(msg, func(name, field []byte) {
		for i := range signedFields {
			if equalFoldASCII(name, signedFields[i]) {
				writeLen(h, field)
				return
			}
		}
	})
	if err != nil {
		return fp, false
	}
	writeLen(h, msg[body:])
	h.Sum(fp[:0])
	return fp, true
}

// writeLen writes b with its length in front, so that no two sequences of
// parts hash alike.
func writeLen(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
