package tenant_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/netip"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/store"
	. "github.com/heedmail/heed/internal/tenant"
)

// TestBoltLayoutUnchanged: a data directory written before the registry
// moved onto the backend is read as it is (no data migration), and the
// registry writes the same keys and values still. bbolt only.
func TestBoltLayoutUnchanged(t *testing.T) {
	db := openBoltDB(t)
	ctx := context.Background()
	sum := sha256.Sum256([]byte("secret"))
	cred := Credential{ID: "c1", Tenant: "acme", Kind: KindPassword, Username: "c1", SecretHash: sum[:], DefaultList: "transactional", CreatedAt: testTime}
	key := Credential{ID: "k1", Tenant: "acme", Kind: KindAPIKey, SecretHash: sum[:], Access: ReadOnly, CreatedAt: testTime}
	ip := Credential{ID: "n1", Tenant: "acme", Kind: KindIP, Network: netip.MustParsePrefix("198.51.100.0/24"), CreatedAt: testTime}
	raw := []struct {
		bucket []byte
		k      string
		v      any
	}{
		{store.BucketTenants, "acme", Tenant{ID: "acme", Name: "Acme", CreatedAt: testTime}},
		{store.BucketCredentials, "acme\x00c1", cred},
		{store.BucketCredentials, "acme\x00k1", key},
		{store.BucketCredentials, "acme\x00n1", ip},
		{store.BucketUsernames, "u:c1", "acme\x00c1"},
		{store.BucketUsernames, "k:k1", "acme\x00k1"},
		{store.BucketUsernames, "n:198.51.100.0/24", "acme\x00n1"},
		{store.BucketDomains, "acme.test", Domain{Name: "acme.test", Tenant: "acme", CreatedAt: testTime}},
		{store.BucketDKIMKeys, "acme.test\x00s1", DKIMKey{Domain: "acme.test", Selector: "s1", State: KeyActive, CreatedAt: testTime}},
		{store.BucketLists, "acme\x00news", List{Tenant: "acme", ID: "news", Kind: Marketing, CreatedAt: testTime}},
	}
	value := func(v any) []byte {
		if s, ok := v.(string); ok {
			return []byte(s)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, r := range raw {
			if err := tx.Bucket(r.bucket).Put([]byte(r.k), value(r.v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	r := NewRegistry(boltdb.Tenants(db))
	if c, err := r.Authenticate(ctx, "c1", "secret"); err != nil || c.ID != "c1" {
		t.Errorf("Authenticate = %+v, %v", c, err)
	}
	if c, err := r.AuthenticateAPIKey(ctx, APIKeyPrefix+"k1_secret"); err != nil || c.Access != ReadOnly {
		t.Errorf("AuthenticateAPIKey = %+v, %v", c, err)
	}
	if c, err := r.CredentialForAddr(ctx, netip.MustParseAddr("198.51.100.7")); err != nil || c.ID != "n1" {
		t.Errorf("CredentialForAddr = %+v, %v", c, err)
	}
	if ks, err := r.Keys(ctx, "acme.test"); err != nil || len(ks) != 1 {
		t.Errorf("Keys = %+v, %v", ks, err)
	}
	if l, err := r.List(ctx, "acme", "news"); err != nil || l.Kind != Marketing {
		t.Errorf("List = %+v, %v", l, err)
	}

	// Written through the registry: the same keys and values again.
	err = db.Update(func(tx *bolt.Tx) error {
		for _, r := range raw {
			if err := tx.Bucket(r.bucket).Delete([]byte(r.k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := boltdb.Tenants(db)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateTenant(ctx, Tenant{ID: "acme", Name: "Acme", CreatedAt: testTime}))
	for _, c := range []Credential{cred, key, ip} {
		must(s.CreateCredential(ctx, c))
	}
	must(s.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "acme", CreatedAt: testTime}, DKIMKey{Domain: "acme.test", Selector: "s1", State: KeyActive, CreatedAt: testTime}))
	must(s.PutList(ctx, List{Tenant: "acme", ID: "news", Kind: Marketing, CreatedAt: testTime}))
	err = db.View(func(tx *bolt.Tx) error {
		for _, r := range raw {
			if got, want := tx.Bucket(r.bucket).Get([]byte(r.k)), value(r.v); string(got) != string(want) {
				t.Errorf("%s %q = %s, want %s", r.bucket, r.k, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
