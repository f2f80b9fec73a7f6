package tenant_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	. "github.com/heedmail/heed/internal/tenant"
)

// TestTenantNetworksPublicOnly: a tenant's key cannot register the
// address a proxy, a NAT, a container bridge or the relay itself would
// give every client (loopback, private, CGNAT, link-local, ULA, in any
// spelling), nor one no client ever has; an operator may register the
// former for a local app or a private network, not the latter. The
// documentation ranges stay open to tenants.
func TestTenantNetworksPublicOnly(t *testing.T) { eachBackend(t, testTenantNetworksPublicOnly) }

func testTenantNetworksPublicOnly(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	for _, cidr := range []string{
		"127.0.0.1", "::1", "0.0.0.0/24", "172.17.0.1", "169.254.169.0/24", "fe80::/64",
		"224.0.0.0/24", "::/128", "::/96", "10.1.2.0/24", "192.168.1.0/24", "100.64.1.0/24",
		"198.18.0.0/24", "192.0.0.0/29", "fd00:1::/64", "fec0::/64", "255.255.255.255",
		"ff02::/64", "::ffff:127.0.0.1", "::ffff:10.0.0.0/120", "64:ff9b:1::/56",
	} {
		_, err := r.CreateIPWithin(ctx, TenantNetworks, "acme", cidr, "")
		if !errors.Is(err, ErrNetworkRefused) || !strings.Contains(err.Error(), "RFC") {
			t.Errorf("tenant key, %s: %v, want ErrNetworkRefused naming the range", cidr, err)
		}
	}
	for _, cidr := range []string{"192.0.2.0/24", "198.51.100.7", "203.0.113.0/25", "2001:db8:5::/56", "8.8.8.0/24", "2a00:1450:4001::/56"} {
		if _, err := r.CreateIPWithin(ctx, TenantNetworks, "acme", cidr, ""); err != nil {
			t.Errorf("tenant key, %s: %v", cidr, err)
		}
	}
	for _, cidr := range []string{"127.0.0.0/8", "::1", "10.0.0.0/8", "172.17.0.1", "fd00::/48", "100.64.0.0/10"} {
		if _, err := r.CreateIP(ctx, "other", cidr, ""); err != nil {
			t.Errorf("operator, %s: %v", cidr, err)
		}
	}
	for _, cidr := range []string{"0.0.0.0/8", "224.0.0.0/4", "239.1.2.3", "240.0.0.0/8", "255.255.255.255", "::", "ff02::1", "::/96"} {
		if _, err := r.CreateIP(ctx, "other", cidr, ""); !errors.Is(err, ErrNetworkRefused) {
			t.Errorf("operator, %s, no client's address: %v, want ErrNetworkRefused", cidr, err)
		}
	}
}

// TestIPCredentialCap: a tenant's key registers MaxTenantIPCredentials
// networks and no more, also when it asks for many at once; one deleted
// makes room; an operator may register more for the tenant.
func TestIPCredentialCap(t *testing.T) { eachBackend(t, testIPCredentialCap) }

func testIPCredentialCap(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 2*MaxTenantIPCredentials)
	for i := range 2 * MaxTenantIPCredentials {
		wg.Go(func() {
			_, err := r.CreateIPWithin(ctx, TenantNetworks, "acme", fmt.Sprintf("203.0.113.%d", i), "")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	made, refused := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			made++
		case errors.Is(err, ErrTooManyNetworks):
			refused++
		default:
			t.Errorf("CreateIPWithin: %v", err)
		}
	}
	if made != MaxTenantIPCredentials || refused != MaxTenantIPCredentials {
		t.Fatalf("%d made, %d refused at once, want %d and %d", made, refused, MaxTenantIPCredentials, MaxTenantIPCredentials)
	}
	// Password credentials do not count.
	if _, _, err := r.CreatePassword(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	c, err := r.CreateIP(ctx, "acme", "198.51.100.0/24", "")
	if err != nil {
		t.Fatalf("an operator's 17th: %v", err)
	}
	if _, err := r.CreateIPWithin(ctx, TenantNetworks, "acme", "192.0.2.0/24", ""); !errors.Is(err, ErrTooManyNetworks) {
		t.Errorf("a tenant key's 18th: %v, want ErrTooManyNetworks", err)
	}
	cs, _ := r.Credentials(ctx, "acme")
	for _, c := range cs {
		if c.Kind == KindIP && c.Network.Bits() == 32 {
			if err := r.DeleteCredential(ctx, "acme", c.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.DeleteCredential(ctx, "acme", c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateIPWithin(ctx, TenantNetworks, "acme", "192.0.2.0/24", ""); err != nil {
		t.Errorf("after deleting: %v", err)
	}
}

// TestNetIndexFollowsWrites: the most specific network holding a client
// wins, in IPv4 and IPv6, and every create and delete is seen by the
// next match, though matches are served from an in-memory index.
func TestNetIndexFollowsWrites(t *testing.T) { eachBackend(t, testNetIndexFollowsWrites) }

func testNetIndexFollowsWrites(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	match := func(addr string) string {
		t.Helper()
		c, err := r.CredentialForAddr(ctx, netip.MustParseAddr(addr))
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return c.Tenant + " " + c.Network.String()
	}
	wide, err := r.CreateIP(ctx, "acme", "10.0.0.0/8", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := match("10.1.2.3"); got != "acme 10.0.0.0/8" {
		t.Errorf("10.1.2.3 = %q", got)
	}
	narrow, err := r.CreateIP(ctx, "acme", "10.1.2.0/24", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateIP(ctx, "other", "2001:db8::/32", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateIP(ctx, "other", "2001:db8:1:2::/64", ""); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"10.1.2.3": "acme 10.1.2.0/24", "::ffff:10.1.2.3": "acme 10.1.2.0/24", "10.9.9.9": "acme 10.0.0.0/8",
		"11.0.0.1": "", "2001:db8:1:2::9": "other 2001:db8:1:2::/64", "2001:db8:7::1": "other 2001:db8::/32",
		"2001:db9::1": "", "fe80::1%eth0": "",
	} {
		if got := match(addr); got != want {
			t.Errorf("%s = %q, want %q", addr, got, want)
		}
	}
	if err := r.DeleteCredential(ctx, "acme", narrow.ID); err != nil {
		t.Fatal(err)
	}
	if got := match("10.1.2.3"); got != "acme 10.0.0.0/8" {
		t.Errorf("after deleting the /24: %q", got)
	}
	if err := r.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if got := match("10.1.2.3"); got != "" {
		t.Errorf("after deleting the tenant of %s: %q", wide.Network, got)
	}
}
