package queue_test

import (
	"context"
	"crypto"
	"errors"
	. "github.com/heedmail/heed/internal/queue"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testsink"
)

// countingTenants is the registry with every signing key counting the
// private-key operations made with it.
type countingTenants struct {
	*tenant.Registry
	ops *atomic.Int64
}

func (c countingTenants) SigningKeys(ctx context.Context, domain string) ([]dkim.Key, error) {
	keys, err := c.Registry.SigningKeys(ctx, domain)
	for i := range keys {
		keys[i].Signer = countingSigner{keys[i].Signer, c.ops}
	}
	return keys, err
}

type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (c countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// withCountedSigning restarts e's queue with the registry's keys counting
// into the returned counter.
func (e *env) withCountedSigning(reg *tenant.Registry) *atomic.Int64 {
	e.t.Helper()
	e.q.Stop(context.Background())
	ops := new(atomic.Int64)
	e.opts.Tenants = countingTenants{reg, ops}
	e.q = New(e.opts)
	e.q.Start()
	return ops
}

// signaturesOf returns the DKIM-Signature fields on top of each copy the
// sink holds, by recipient, after checking that every signature of each
// copy verifies against the domain's published keys.
func signaturesOf(t *testing.T, reg *tenant.Registry, msgs []testsink.Message) map[string]string {
	t.Helper()
	keys, err := reg.Keys(context.Background(), "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(name string) ([]string, error) {
		for _, k := range keys {
			if k.Name() == name {
				return []string{k.TXT}, nil
			}
		}
		return nil, errors.New("no such record")
	}
	out := map[string]string{}
	for _, m := range msgs {
		res, err := dkim.Verify(m.Data, lookup)
		if err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
			t.Errorf("copy for %v: signatures %+v, %v; want two valid ones", m.To, res, err)
		}
		s := string(m.Data)
		out[m.To[0]] = s[:strings.Index(s, "Received:")]
	}
	return out
}

// TestIdenticalCopiesShareOneSignature: a transactional message to ten
// recipients is signed once, every copy carries that signature and it
// verifies on each (the copies differ only in the unsigned Received
// field); a marketing message's copies each carry their own token and get
// their own signature.
func TestIdenticalCopiesShareOneSignature(t *testing.T) {
	e := newEnv(t, nil)
	clk := &clock{now: time.Now()}
	reg, _ := e.withCompliance(clk.Now, time.Hour)
	ops := e.withCountedSigning(reg)

	var rcpts []string
	for i := range 10 {
		rcpts = append(rcpts, "reader-"+string(rune('a'+i))+"@example.net")
	}
	m := e.submit(rcpts...)
	for i := range rcpts {
		e.waitState(m.ID, i, Delivered)
	}
	sigs := signaturesOf(t, reg, e.sink.Wait(t, len(rcpts), 10*time.Second))
	if len(sigs) != len(rcpts) {
		t.Fatalf("%d copies, want %d", len(sigs), len(rcpts))
	}
	for _, r := range rcpts {
		if sigs[r] != sigs[rcpts[0]] || !strings.HasPrefix(sigs[r], "DKIM-Signature:") {
			t.Errorf("copy for %s:\n%s\nwant the signature of the copy for %s:\n%s", r, sigs[r], rcpts[0], sigs[rcpts[0]])
		}
	}
	// One RSA and one Ed25519 signature for the ten copies.
	if n := ops.Load(); n != 2 {
		t.Errorf("%d private-key operations for %d identical copies, want 2 (one per key)", n, len(rcpts))
	}

	ops.Store(0)
	mk := e.submitList("marketing", rcpts[:3]...)
	for i := range 3 {
		e.waitState(mk.ID, i, Delivered)
	}
	all := e.sink.Wait(t, len(rcpts)+3, 10*time.Second)
	personal := signaturesOf(t, reg, all[len(rcpts):])
	if personal[rcpts[0]] == personal[rcpts[1]] || personal[rcpts[1]] == personal[rcpts[2]] || personal[rcpts[0]] == personal[rcpts[2]] {
		t.Error("personalised copies share a signature")
	}
	if n := ops.Load(); n != 6 {
		t.Errorf("%d private-key operations for 3 personalised copies, want 6 (each signed)", n)
	}
}
