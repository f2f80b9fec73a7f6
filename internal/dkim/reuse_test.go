package dkim

import (
	"crypto"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSigner counts the private-key operations made through it.
type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (c countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// countedKeys is signingKeys with every key counting into n.
func countedKeys(t testing.TB, n *atomic.Int64) []Key {
	keys := signingKeys(t)
	for i := range keys {
		keys[i].Signer = countingSigner{keys[i].Signer, n}
	}
	return keys
}

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func copyFor(rcpt string, msg []byte) []byte {
	return insertField(msg, "Received: by heed for <"+rcpt+">", true)
}

// TestReuseIdenticalCopies: copies that differ only in the unsigned
// Received field get one signing between them, and the signature verifies
// on each; copies with a different signed field or body, or another key,
// are signed on their own.
func TestReuseIdenticalCopies(t *testing.T) {
	var ops atomic.Int64
	keys := countedKeys(t, &ops)
	zone := publish(t, keys)
	clk := &testClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	r := NewReuse(clk.now)
	base := testMessages["plain"]

	var first string
	for _, rcpt := range []string{"a@example.net", "b@example.net", "c@example.net"} {
		cp := copyFor(rcpt, base)
		sig, err := r.Sign(cp, keys)
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = sig
		} else if sig != first {
			t.Errorf("copy for %s: a different signature for an identical signed part", rcpt)
		}
		if rs, err := Verify(append([]byte(sig), cp...), zone.lookupTXT); err != nil || len(rs) != 2 || rs[0].Err != nil || rs[1].Err != nil {
			t.Errorf("copy for %s does not verify: %v %s", rcpt, err, describe(rs))
		}
	}
	if n := ops.Load(); n != 2 { // one RSA and one Ed25519 signature
		t.Errorf("%d key operations for 3 identical copies, want 2 (one per key)", n)
	}

	personal := insertField(copyFor("d@example.net", base), "List-Unsubscribe: <https://heed.example/u/TOKEN-D>", false)
	other := append(copyFor("e@example.net", base), "P.S.\r\n"...)
	otherKey := append([]Key{}, keys...)
	otherKey[1].Selector = "heed-r-20261124-zzzzzz"
	for what, c := range map[string]struct {
		msg  []byte
		keys []Key
	}{"a List-Unsubscribe": {personal, keys}, "another body": {other, keys}, "another selector": {copyFor("f@example.net", base), otherKey}} {
		before := ops.Load()
		sig, err := r.Sign(c.msg, c.keys)
		if err != nil {
			t.Fatal(err)
		}
		if sig == first || ops.Load()-before != 2 {
			t.Errorf("a copy with %s reused the signature (%d key operations)", what, ops.Load()-before)
		}
	}

	// A retry after ReuseFor is signed afresh.
	clk.add(ReuseFor)
	before := ops.Load()
	if _, err := r.Sign(copyFor("a@example.net", base), keys); err != nil {
		t.Fatal(err)
	}
	if ops.Load()-before != 2 {
		t.Errorf("a copy %v later reused the old signature", ReuseFor)
	}
}

// TestReuseConcurrentCopies: copies signed at once by several workers
// wait for one signing instead of each making their own.
func TestReuseConcurrentCopies(t *testing.T) {
	var ops atomic.Int64
	keys := countedKeys(t, &ops)
	r := NewReuse(nil)
	sigs := make([]string, 10)
	var wg sync.WaitGroup
	for i := range sigs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := r.Sign(copyFor("rcpt@example.net", testMessages["multipart"]), keys)
			if err != nil {
				t.Error(err)
			}
			sigs[i] = s
		}()
	}
	wg.Wait()
	for i := range sigs {
		if sigs[i] != sigs[0] || sigs[i] == "" {
			t.Fatalf("copy %d got another signature", i)
		}
	}
	if n := ops.Load(); n != 2 {
		t.Errorf("%d key operations for 10 concurrent copies, want 2", n)
	}
}

// TestReuseRefuses: a copy Sign would refuse is refused even when an
// identical signed part was signed before, and a failed signing is not
// handed to the next copy.
func TestReuseRefuses(t *testing.T) {
	keys := signingKeys(t)
	r := NewReuse(nil)
	good := copyFor("a@example.net", testMessages["plain"])
	if _, err := r.Sign(good, keys); err != nil {
		t.Fatal(err)
	}
	bad := insertField(good, "Bad Field: x", false)
	if _, err := r.Sign(bad, keys); !errors.Is(err, ErrBadMessage) {
		t.Errorf("a malformed copy: %v, want ErrBadMessage", err)
	}
	var fail atomic.Bool
	fail.Store(true)
	broken := append([]Key{}, keys...)
	broken[1].Signer = failingSigner{broken[1].Signer, &fail}
	fresh := copyFor("a@example.net", testMessages["folded"])
	if _, err := r.Sign(fresh, broken); err == nil {
		t.Fatal("a failing key signed")
	}
	fail.Store(false)
	if _, err := r.Sign(fresh, broken); err != nil {
		t.Errorf("the next copy got the failure of the one before: %v", err)
	}
}

type failingSigner struct {
	crypto.Signer
	fail *atomic.Bool
}

func (f failingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if f.fail.Load() {
		return nil, errors.New("HSM unplugged")
	}
	return f.Signer.Sign(r, d, o)
}
