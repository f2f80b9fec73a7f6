package tenant_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	. "github.com/heedmail/heed/internal/tenant"
)

// seedNetworks stores n ip credentials of tenant, one /24 each in
// 10.0.0.0/8 onwards, in one transaction (n Creates would be n fsyncs).
func seedNetworks(tb testing.TB, b backend.Backend, s *DBStore, tenant string, n int) {
	tb.Helper()
	ctx := context.Background()
	if err := s.CreateTenant(ctx, Tenant{ID: tenant, Name: tenant}); err != nil {
		tb.Fatal(err)
	}
	err := b.Update(ctx, func(tx backend.Tx) error {
		for i := range n {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), 0}), 24)
			c := Credential{ID: p.Addr().String(), Tenant: tenant, Kind: KindIP, Network: p, CreatedAt: time.Unix(0, 0)}
			if err := tx.Tenants().PutCredential(c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	s.InvalidateCache()
}

// BenchmarkCredentialForAddr: what matching a client to its ip credential
// costs, at every EHLO and MAIL of a session without AUTH, with 10,000
// networks registered; the client's is among them.
func BenchmarkCredentialForAddr(b *testing.B) {
	db := openBoltDB(b)
	s := boltdb.Tenants(db)
	seedNetworks(b, boltdb.New(db), s, "big", 10000)
	ctx := context.Background()
	addr := netip.MustParseAddr("10.0.20.7")
	if c, err := s.CredentialForAddr(ctx, addr); err != nil || c.Network.String() != "10.0.20.0/24" {
		b.Fatalf("CredentialForAddr = %v, %v", c.Network, err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.CredentialForAddr(ctx, addr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNetIndexRebuild: what the first match after a write of the
// registry costs, with 10,000 networks registered: the index is read again.
func BenchmarkNetIndexRebuild(b *testing.B) {
	db := openBoltDB(b)
	s := boltdb.Tenants(db)
	seedNetworks(b, boltdb.New(db), s, "big", 10000)
	ctx := context.Background()
	addr := netip.MustParseAddr("10.0.20.7")
	for b.Loop() {
		s.InvalidateCache()
		if _, err := s.CredentialForAddr(ctx, addr); err != nil {
			b.Fatal(err)
		}
	}
}
