package tenant_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/dkim"

	. "github.com/heedmail/heed/internal/tenant"
)

func keyedRegistry(t *testing.T, open opener) *Registry {
	t.Helper()
	r := newRegistry(t, open)
	if err := r.SetSealKey([]byte("server key for the tests, 32 b..")); err != nil {
		t.Fatal(err)
	}
	return r
}

// signAndVerify signs a message with the domain's signing keys and checks
// every signature against the TXT values the keys publish.
func signAndVerify(t *testing.T, r *Registry, domain string) []dkim.Result {
	t.Helper()
	ctx := context.Background()
	keys, err := r.SigningKeys(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: a@" + domain + "\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n")
	sigs, err := dkim.Sign(msg, keys)
	if err != nil {
		t.Fatal(err)
	}
	all, err := r.Keys(ctx, domain)
	if err != nil {
		t.Fatal(err)
	}
	res, err := dkim.Verify(append([]byte(sigs), msg...), func(name string) ([]string, error) {
		for _, k := range all {
			if k.Name() == name {
				return []string{k.TXT}, nil
			}
		}
		return nil, fmt.Errorf("no record at %s", name)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range res {
		if v.Err != nil {
			t.Errorf("%s/%s: %v", v.Domain, v.Selector, v.Err)
		}
	}
	return res
}

func TestCreateDomainKeys(t *testing.T) { eachBackend(t, testCreateDomainKeys) }

func testCreateDomainKeys(t *testing.T, open opener) {
	r := keyedRegistry(t, open)
	ctx := context.Background()
	_, keys, err := r.CreateDomain(ctx, "acme", "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Algorithm != string(dkim.RSA) || keys[1].Algorithm != string(dkim.Ed25519) {
		t.Fatalf("keys %+v, want an RSA and an Ed25519 key", keys)
	}
	for _, k := range keys {
		if k.State != KeyActive || k.Selector == "" || !strings.HasPrefix(k.TXT, "v=DKIM1;") {
			t.Errorf("key %+v", k)
		}
	}
	if keys[0].Selector == keys[1].Selector {
		t.Error("both keys share a selector")
	}
	res := signAndVerify(t, r, "acme.test")
	if len(res) != 2 || res[0].Algorithm != dkim.RSA {
		t.Errorf("signatures %+v, want RSA then Ed25519", res)
	}
	if _, _, err := r.CreateDomain(ctx, "other", "acme.test"); !errors.Is(err, ErrExists) {
		t.Errorf("second owner of a domain: %v, want ErrExists", err)
	}
}

// TestKeysSealedAtRest: the private key is not in the database in the
// clear, and does not open under another server key.
func TestKeysSealedAtRest(t *testing.T) { eachBackend(t, testKeysSealedAtRest) }

func testKeysSealedAtRest(t *testing.T, open opener) {
	r := keyedRegistry(t, open)
	ctx := context.Background()
	if _, _, err := r.CreateDomain(ctx, "acme", "acme.test"); err != nil {
		t.Fatal(err)
	}
	stored, _ := r.Keys(ctx, "acme.test")
	keys, _ := r.SigningKeys(ctx, "acme.test")
	for i, k := range keys {
		der, err := dkim.MarshalPrivate(k.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(stored[i].Sealed, der[len(der)-32:]) {
			t.Errorf("key %s stored in the clear", k.Selector)
		}
	}
	other := &Registry{Store: r.Store, Now: r.Now}
	other.SetSealKey([]byte("another server key, 32 bytes...."))
	if _, err := other.SigningKeys(ctx, "acme.test"); err == nil || !strings.Contains(err.Error(), "server key") {
		t.Errorf("keys opened under another server key: %v", err)
	}
}

// TestKeyRotation: a new key is published first and signs nothing;
// activating it retires the old key of its algorithm, whose record stays
// until the key is deleted; the active key cannot be deleted.
func TestKeyRotation(t *testing.T) { eachBackend(t, testKeyRotation) }

func testKeyRotation(t *testing.T, open opener) {
	r := keyedRegistry(t, open)
	ctx := context.Background()
	_, first, err := r.CreateDomain(ctx, "acme", "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	next, err := r.AddKey(ctx, "acme.test", dkim.RSA)
	if err != nil {
		t.Fatal(err)
	}
	if next.State != KeyPublished {
		t.Errorf("new key state %q, want published", next.State)
	}
	for _, v := range signAndVerify(t, r, "acme.test") {
		if v.Selector == next.Selector {
			t.Error("a published key signed before activation")
		}
	}
	if err := r.ActivateKey(ctx, "acme.test", next.Selector, r.Now()); err != nil {
		t.Fatal(err)
	}
	res := signAndVerify(t, r, "acme.test")
	if len(res) != 2 || res[0].Selector != next.Selector || res[1].Selector != first[1].Selector {
		t.Errorf("signatures %+v, want the new RSA key and the old Ed25519 key", res)
	}
	all, _ := r.Keys(ctx, "acme.test")
	states := map[string]string{}
	for _, k := range all {
		states[k.Selector] = k.State
	}
	if states[first[0].Selector] != KeyRetired || states[next.Selector] != KeyActive {
		t.Errorf("states %v", states)
	}
	if err := r.DeleteKey(ctx, "acme.test", next.Selector); !errors.Is(err, ErrActiveKey) {
		t.Errorf("deleting the active key: %v", err)
	}
	if err := r.DeleteKey(ctx, "acme.test", first[0].Selector); err != nil {
		t.Fatal(err)
	}
	if all, _ := r.Keys(ctx, "acme.test"); len(all) != 2 {
		t.Errorf("%d keys left, want 2", len(all))
	}
}

// TestDomainKeysGoWithDomain: deleting a domain deletes its keys, so a
// later owner of the name never signs with the old owner's keys.
func TestDomainKeysGoWithDomain(t *testing.T) { eachBackend(t, testDomainKeysGoWithDomain) }

func testDomainKeysGoWithDomain(t *testing.T, open opener) {
	r := keyedRegistry(t, open)
	ctx := context.Background()
	_, old, err := r.CreateDomain(ctx, "acme", "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteDomain(ctx, "acme", "acme.test"); err != nil {
		t.Fatal(err)
	}
	if ks, _ := r.Keys(ctx, "acme.test"); len(ks) != 0 {
		t.Fatalf("%d keys left after deleting the domain", len(ks))
	}
	_, fresh, err := r.CreateDomain(ctx, "other", "acme.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range fresh {
		if k.Selector == old[0].Selector || k.Selector == old[1].Selector {
			t.Error("a selector was reused")
		}
	}
	if err := r.DeleteTenant(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if ks, _ := r.Keys(ctx, "acme.test"); len(ks) != 0 {
		t.Errorf("%d keys left after deleting the tenant", len(ks))
	}
}

// TestEnsureKeys gives a domain registered before signing its keys.
func TestEnsureKeys(t *testing.T) { eachBackend(t, testEnsureKeys) }

func testEnsureKeys(t *testing.T, open opener) {
	r := keyedRegistry(t, open)
	ctx := context.Background()
	if err := r.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	if ks, err := r.SigningKeys(ctx, "acme.test"); err != nil || len(ks) != 0 {
		t.Fatalf("keys %v %v, want none", ks, err)
	}
	if made, err := r.EnsureKeys(ctx, "acme.test"); err != nil || len(made) != 2 {
		t.Fatalf("EnsureKeys made %d keys, %v; want 2", len(made), err)
	}
	if made, err := r.EnsureKeys(ctx, "acme.test"); err != nil || len(made) != 0 {
		t.Fatalf("EnsureKeys again made %d keys, %v; want none", len(made), err)
	}
	if ks, _ := r.Keys(ctx, "acme.test"); len(ks) != 2 {
		t.Errorf("%d keys, want 2 (EnsureKeys twice adds nothing the second time)", len(ks))
	}
	if len(signAndVerify(t, r, "acme.test")) != 2 {
		t.Error("not signed with both keys")
	}
}
