package tenant_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	. "github.com/heedmail/heed/internal/tenant"
)

// testTime is whole microseconds: PostgreSQL keeps no finer times.
var testTime = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// TestTenantRecords: a tenant is created once, with its default lists,
// read back as written, listed in id order, updated only if it exists.
func TestTenantRecords(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, ctx := open(t), context.Background()
		for _, id := range []string{"zeta", "acme", "acme-2"} {
			if err := s.CreateTenant(ctx, Tenant{ID: id, Name: "N " + id, PostalAddress: "1 Main St", CreatedAt: testTime}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateTenant(ctx, Tenant{ID: "acme", Name: "again"}); !errors.Is(err, ErrExists) {
			t.Errorf("CreateTenant of an existing id: %v, want ErrExists", err)
		}
		got, err := s.Tenant(ctx, "acme")
		if want := (Tenant{ID: "acme", Name: "N acme", PostalAddress: "1 Main St", CreatedAt: testTime}); err != nil || got != want {
			t.Errorf("Tenant = %+v, %v; want %+v", got, err, want)
		}
		all, err := s.Tenants(ctx)
		var ids []string
		for _, x := range all {
			ids = append(ids, x.ID)
		}
		if err != nil || !slices.Equal(ids, []string{"acme", "acme-2", "zeta"}) {
			t.Errorf("Tenants = %v, %v; want acme, acme-2, zeta", ids, err)
		}
		lists, err := s.Lists(ctx, "acme")
		if err != nil || len(lists) != 2 || lists[0].ID != "marketing" || lists[1].ID != "transactional" ||
			lists[0].Kind != Marketing || lists[1].Kind != Transactional || !lists[0].CreatedAt.Equal(testTime) {
			t.Errorf("default lists %+v, %v", lists, err)
		}
		if err := s.UpdateTenant(ctx, Tenant{ID: "nobody", Name: "x"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateTenant of an unknown tenant: %v, want ErrNotFound", err)
		}
		if _, err := s.Tenant(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Tenant(nobody): %v, want ErrNotFound", err)
		}
		if err := s.DeleteTenant(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteTenant(nobody): %v, want ErrNotFound", err)
		}
	})
}

// TestListRecords: a list changed keeps the time it was created; lists
// belong to an existing tenant, and one tenant's list is not another's.
func TestListRecords(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		r, ctx := newRegistry(t, open), context.Background()
		news := List{Tenant: "acme", ID: "news", Name: "News", Kind: Marketing, CreatedAt: testTime}
		if err := r.PutList(ctx, news); err != nil {
			t.Fatal(err)
		}
		changed := List{Tenant: "acme", ID: "news", Name: "Newsletter", Kind: Transactional, Unsubscribe: true, CreatedAt: testTime.Add(time.Hour)}
		if err := r.PutList(ctx, changed); err != nil {
			t.Fatal(err)
		}
		changed.CreatedAt = testTime
		if got, err := r.List(ctx, "acme", "news"); err != nil || got != changed {
			t.Errorf("List = %+v, %v; want %+v", got, err, changed)
		}
		if _, err := r.List(ctx, "other", "news"); !errors.Is(err, ErrNotFound) {
			t.Errorf("another tenant's list: %v, want ErrNotFound", err)
		}
		if err := r.PutList(ctx, List{Tenant: "nobody", ID: "news", Kind: Marketing}); !errors.Is(err, ErrNotFound) {
			t.Errorf("a list of an unknown tenant: %v, want ErrNotFound", err)
		}
		if ls, _ := r.Lists(ctx, "other"); len(ls) != 2 {
			t.Errorf("other's lists %+v, want its two defaults only", ls)
		}
	})
}

// TestAPIKeys: a key is stored as its hash only, authenticates with its
// access, not with a wrong secret or a malformed token, and stops when
// revoked; another tenant cannot revoke it.
func TestAPIKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		r, ctx := newRegistry(t, open), context.Background()
		ro, roKey, err := r.CreateAPIKey(ctx, "acme", ReadOnly, "ci")
		if err != nil {
			t.Fatal(err)
		}
		rw, rwKey, err := r.CreateAPIKey(ctx, "acme", ReadWrite, "deploy")
		if err != nil {
			t.Fatal(err)
		}
		for key, want := range map[string]Credential{roKey: ro, rwKey: rw} {
			got, err := r.AuthenticateAPIKey(ctx, key)
			if err != nil || got.ID != want.ID || got.Tenant != "acme" || got.Access != want.Access || got.Name != want.Name {
				t.Errorf("AuthenticateAPIKey = %+v, %v; want %+v", got, err, want)
			}
			secret := key[len(APIKeyPrefix)+len(want.ID)+1:]
			if sum := sha256.Sum256([]byte(secret)); string(got.SecretHash) != string(sum[:]) {
				t.Errorf("key %s stored as %x, want the SHA-256 of its secret", want.ID, got.SecretHash)
			}
		}
		for _, bad := range []string{roKey + "x", roKey[:len(roKey)-1], "heed_" + ro.ID, "heed_" + ro.ID + "_", rwKey[len(APIKeyPrefix):], "", "heed_NOPE_x"} {
			if _, err := r.AuthenticateAPIKey(ctx, bad); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("AuthenticateAPIKey(%q) = %v, want ErrBadCredentials", bad, err)
			}
		}
		if err := r.DeleteCredential(ctx, "other", ro.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("another tenant revoked acme's key: %v", err)
		}
		if err := r.DeleteCredential(ctx, "acme", ro.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AuthenticateAPIKey(ctx, roKey); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("a revoked key: %v, want ErrBadCredentials", err)
		}
		if _, err := r.AuthenticateAPIKey(ctx, rwKey); err != nil {
			t.Errorf("the key left: %v", err)
		}
		if _, _, err := r.CreateAPIKey(ctx, "nobody", ReadOnly, ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("a key of an unknown tenant: %v, want ErrNotFound", err)
		}
	})
}

// TestNamesTakenOnce: a username and an API key id name one credential
// of any tenant; a domain belongs to one tenant.
func TestNamesTakenOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		r, ctx := newRegistry(t, open), context.Background()
		c, _, err := r.CreatePassword(ctx, "acme", "")
		if err != nil {
			t.Fatal(err)
		}
		k, _, err := r.CreateAPIKey(ctx, "acme", ReadOnly, "")
		if err != nil {
			t.Fatal(err)
		}
		dup := Credential{ID: "dup", Tenant: "other", Kind: KindPassword, Username: c.Username, CreatedAt: testTime}
		if err := r.CreateCredential(ctx, dup); !errors.Is(err, ErrExists) {
			t.Errorf("another tenant's credential with acme's username: %v, want ErrExists", err)
		}
		if err := r.CreateCredential(ctx, Credential{ID: k.ID, Tenant: "other", Kind: KindAPIKey, Access: ReadWrite, CreatedAt: testTime}); !errors.Is(err, ErrExists) {
			t.Errorf("another tenant's API key with acme's key id: %v, want ErrExists", err)
		}
		if got, err := r.CredentialByUsername(ctx, c.Username); err != nil || got.Tenant != "acme" || got.ID != c.ID {
			t.Errorf("CredentialByUsername = %+v, %v; want acme's", got, err)
		}
		if got, err := r.APIKey(ctx, k.ID); err != nil || got.Tenant != "acme" {
			t.Errorf("APIKey = %+v, %v; want acme's", got, err)
		}
		if cs, _ := r.Credentials(ctx, "other"); len(cs) != 0 {
			t.Errorf("other holds %+v, want nothing", cs)
		}
	})
}

// TestDeleteTenantRemovesItsOwn: deleting a tenant removes its
// credentials of every kind (no login, key or network of it works), its
// domains with their keys and its lists, and nothing of another tenant;
// a tenant created again under the id starts empty.
func TestDeleteTenantRemovesItsOwn(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		r, ctx := keyedRegistry(t, open), context.Background()
		type made struct {
			user, pass, key string
			addr            netip.Addr
		}
		give := func(id, network, domain string) made {
			t.Helper()
			c, pass, err := r.CreatePassword(ctx, id, "")
			if err != nil {
				t.Fatal(err)
			}
			_, key, err := r.CreateAPIKey(ctx, id, ReadWrite, "")
			if err != nil {
				t.Fatal(err)
			}
			ip, err := r.CreateIP(ctx, id, network, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.CreateDomain(ctx, id, domain); err != nil {
				t.Fatal(err)
			}
			if err := r.PutList(ctx, List{Tenant: id, ID: "news", Name: "News", Kind: Marketing}); err != nil {
				t.Fatal(err)
			}
			return made{c.Username, pass, key, ip.Network.Addr()}
		}
		acme := give("acme", "198.51.100.0/24", "acme.test")
		other := give("other", "203.0.113.0/24", "other.test")
		if err := r.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}

		if _, err := r.Authenticate(ctx, acme.user, acme.pass); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("the deleted tenant's password: %v", err)
		}
		if _, err := r.AuthenticateAPIKey(ctx, acme.key); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("the deleted tenant's API key: %v", err)
		}
		if _, err := r.CredentialForAddr(ctx, acme.addr); !errors.Is(err, ErrNotFound) {
			t.Errorf("the deleted tenant's network: %v", err)
		}
		if _, err := r.Domain(ctx, "acme.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the deleted tenant's domain: %v", err)
		}
		if ks, err := r.Keys(ctx, "acme.test"); err != nil || len(ks) != 0 {
			t.Errorf("the deleted tenant's DKIM keys: %d, %v", len(ks), err)
		}
		if _, err := r.Tenant(ctx, "acme"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the deleted tenant: %v", err)
		}

		if _, err := r.Authenticate(ctx, other.user, other.pass); err != nil {
			t.Errorf("the other tenant's password: %v", err)
		}
		if _, err := r.AuthenticateAPIKey(ctx, other.key); err != nil {
			t.Errorf("the other tenant's API key: %v", err)
		}
		if c, err := r.CredentialForAddr(ctx, other.addr); err != nil || c.Tenant != "other" {
			t.Errorf("the other tenant's network: %+v, %v", c, err)
		}
		if ks, err := r.Keys(ctx, "other.test"); err != nil || len(ks) != 2 {
			t.Errorf("the other tenant's keys: %d, %v", len(ks), err)
		}
		if cs, _ := r.Credentials(ctx, "other"); len(cs) != 3 {
			t.Errorf("the other tenant's credentials: %d, want 3", len(cs))
		}
		if ls, _ := r.Lists(ctx, "other"); len(ls) != 3 {
			t.Errorf("the other tenant's lists: %d, want 3", len(ls))
		}

		if err := r.CreateTenant(ctx, Tenant{ID: "acme", Name: "again", CreatedAt: testTime}); err != nil {
			t.Fatal(err)
		}
		cs, _ := r.Credentials(ctx, "acme")
		ds, _ := r.Domains(ctx, "acme")
		ls, _ := r.Lists(ctx, "acme")
		if len(cs) != 0 || len(ds) != 0 || len(ls) != 2 {
			t.Errorf("acme again holds %d credentials, %d domains, %d lists; want 0, 0 and its 2 defaults", len(cs), len(ds), len(ls))
		}
		if _, err := r.CreateIP(ctx, "other", "198.51.100.0/25", ""); err != nil {
			t.Errorf("the deleted tenant's network is not free: %v", err)
		}
	})
}
