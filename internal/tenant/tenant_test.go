package tenant_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	. "github.com/heedmail/heed/internal/tenant"
)

func newRegistry(t *testing.T, open opener) *Registry {
	t.Helper()
	r := NewRegistry(open(t))
	ctx := context.Background()
	for _, id := range []string{"acme", "other"} {
		if err := r.CreateTenant(ctx, Tenant{ID: id, Name: id, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestPasswordCredentials(t *testing.T) { eachBackend(t, testPasswordCredentials) }

func testPasswordCredentials(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	c, pass, err := r.CreatePassword(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pass) < 32 || c.DefaultList != DefaultList {
		t.Errorf("password %q (want ≥ 160 bits), default list %q", pass, c.DefaultList)
	}
	stored, _ := r.CredentialByUsername(ctx, c.Username)
	if string(stored.SecretHash) == pass || len(stored.SecretHash) != 32 {
		t.Errorf("secret stored as %x, want its SHA-256", stored.SecretHash)
	}
	if got, err := r.Authenticate(ctx, c.Username, pass); err != nil || got.Tenant != "acme" {
		t.Errorf("Authenticate = %+v, %v", got, err)
	}
	for _, bad := range [][2]string{{c.Username, pass + "x"}, {"nobody", pass}, {c.Username, ""}} {
		if _, err := r.Authenticate(ctx, bad[0], bad[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrBadCredentials", bad[0], bad[1], err)
		}
	}
	if _, _, err := r.CreatePassword(ctx, "acme", "no-such-list"); err == nil {
		t.Error("a credential with an unknown default list was created")
	}
	if err := r.DeleteCredential(ctx, "acme", c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(ctx, c.Username, pass); err == nil {
		t.Error("a revoked credential still authenticates")
	}
}

func TestIPCredentials(t *testing.T) { eachBackend(t, testIPCredentials) }

func testIPCredentials(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	if _, err := r.CreateIP(ctx, "acme", "203.0.113.0/24", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateIP(ctx, "acme", "203.0.113.7", ""); err != nil {
		t.Errorf("a tenant's own overlapping network refused: %v", err)
	}
	if _, err := r.CreateIP(ctx, "other", "203.0.0.0/16", ""); !errors.Is(err, ErrExists) {
		t.Errorf("another tenant's overlapping network: %v, want ErrExists", err)
	}
	c, err := r.CredentialForAddr(ctx, netip.MustParseAddr("203.0.113.7"))
	if err != nil || c.Network.Bits() != 32 {
		t.Errorf("CredentialForAddr = %+v, %v, want the most specific network", c, err)
	}
	if _, err := r.CredentialForAddr(ctx, netip.MustParseAddr("198.51.100.1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("an address outside every network: %v", err)
	}
}

func TestDomainsAndCascade(t *testing.T) { eachBackend(t, testDomainsAndCascade) }

func testDomainsAndCascade(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	if err := r.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "other"}); !errors.Is(err, ErrExists) {
		t.Errorf("a domain taken by another tenant: %v, want ErrExists", err)
	}
	if err := r.DeleteDomain(ctx, "other", "acme.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant deleted acme's domain: %v", err)
	}
	lists, _ := r.Lists(ctx, "acme")
	if len(lists) != 2 {
		t.Errorf("new tenant has lists %+v, want transactional and marketing", lists)
	}
	if err := r.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Domain(ctx, "acme.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("domain of a deleted tenant still registered: %v", err)
	}
	if err := r.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "other"}); err != nil {
		t.Errorf("domain not free after its tenant was deleted: %v", err)
	}
}

func TestNormalizeDomain(t *testing.T) {
	if d, err := NormalizeDomain(" Acme.TEST. "); err != nil || d != "acme.test" {
		t.Errorf("NormalizeDomain = %q, %v", d, err)
	}
	for _, bad := range []string{"", "localhost", "a..b", "-a.b", "a_b.c", "exämple.com"} {
		if _, err := NormalizeDomain(bad); err == nil {
			t.Errorf("NormalizeDomain(%q) accepted", bad)
		}
	}
}

// TestAPIKeyIsNoSMTPLogin: an API key authenticates as itself only, never
// as an SMTP credential, and the reverse.
func TestAPIKeyIsNoSMTPLogin(t *testing.T) { eachBackend(t, testAPIKeyIsNoSMTPLogin) }

func testAPIKeyIsNoSMTPLogin(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	if err := r.CreateTenant(ctx, Tenant{ID: "keys", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	k, key, err := r.CreateAPIKey(ctx, "keys", ReadOnly, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.AuthenticateAPIKey(ctx, key); err != nil || got.ID != k.ID || got.Access != ReadOnly {
		t.Fatalf("the key: %+v %v", got, err)
	}
	secret := key[len(APIKeyPrefix)+len(k.ID)+1:]
	if _, err := r.Authenticate(ctx, k.ID, secret); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the key's id and secret as an SMTP login: %v", err)
	}
	cr, pass, err := r.CreatePassword(ctx, "keys", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AuthenticateAPIKey(ctx, APIKeyPrefix+cr.Username+"_"+pass); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("an SMTP login as an API key: %v", err)
	}
	if _, _, err := r.CreateAPIKey(ctx, "keys", "admin", ""); err == nil {
		t.Error("an unknown access was accepted")
	}
}

// TestNetworksCanonical: IPv4-mapped networks are their IPv4 networks when
// created, when checked for overlap and when a client is matched, also for
// records written before they were unmapped; networks broader than any
// limit, and networks with host bits, are refused, and an old record of
// the whole internet matches nobody.
func TestNetworksCanonical(t *testing.T) { eachBackend(t, testNetworksCanonical) }

func testNetworksCanonical(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	c, err := r.CreateIP(ctx, "acme", "::ffff:198.51.100.0/120", "")
	if err != nil || c.Network != netip.MustParsePrefix("198.51.100.0/24") {
		t.Fatalf("CreateIP(::ffff:198.51.100.0/120) = %v, %v, want 198.51.100.0/24", c.Network, err)
	}
	if _, err := r.CreateIP(ctx, "other", "198.51.100.128/25", ""); !errors.Is(err, ErrExists) {
		t.Errorf("an IPv4 network inside another tenant's mapped one: %v, want ErrExists", err)
	}
	for _, bad := range []string{"0.0.0.0/0", "::/0", "4.0.0.0/7", "2001::/31", "::ffff:0:0/95", "203.0.113.7/24"} {
		if _, err := r.CreateIP(ctx, "other", bad, ""); !errors.Is(err, ErrNetworkRefused) {
			t.Errorf("CreateIP(%s) = %v, want ErrNetworkRefused", bad, err)
		}
	}
	if _, err := r.CreateIPWithin(ctx, TenantNetworks, "other", "192.0.2.0/23", ""); !errors.Is(err, ErrNetworkRefused) {
		t.Errorf("a /23 within TenantNetworks: %v, want ErrNetworkRefused", err)
	}
	// Records stored before the limits and the unmapping.
	for _, legacy := range []Credential{
		{ID: "old-mapped", Tenant: "acme", Kind: KindIP, Network: netip.MustParsePrefix("::ffff:203.0.113.0/120")},
		{ID: "old-all", Tenant: "acme", Kind: KindIP, Network: netip.MustParsePrefix("0.0.0.0/0")},
	} {
		if err := r.Store.CreateCredential(ctx, legacy); err != nil {
			t.Fatal(err)
		}
	}
	for addr, want := range map[string]string{"203.0.113.9": "old-mapped", "::ffff:198.51.100.9": c.ID, "192.0.2.1": ""} {
		got, err := r.CredentialForAddr(ctx, netip.MustParseAddr(addr))
		if want == "" && !errors.Is(err, ErrNotFound) || want != "" && got.ID != want {
			t.Errorf("CredentialForAddr(%s) = %q, %v, want %q", addr, got.ID, err, want)
		}
	}
	if _, err := r.CreateIP(ctx, "other", "203.0.113.0/24", ""); !errors.Is(err, ErrExists) {
		t.Errorf("overlap with a stored mapped network: %v, want ErrExists", err)
	}
}
