package tenant

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/heedmail/heed/internal/ids"
)

// Registry is the tenant logic on top of a Store: issuing credentials and
// checking them.
type Registry struct {
	Store
	Now  func() time.Time
	keys *keyring // set by SetSealKey
}

// NewRegistry returns a registry over s using the wall clock.
func NewRegistry(s Store) *Registry { return &Registry{Store: s, Now: time.Now} }

// dummyHash is compared against when a username is unknown, so a miss
// costs the same as a wrong password.
var dummyHash = sha256.Sum256([]byte("heed: no such user"))

// Authenticate checks a username and password in constant time and returns
// the credential.
func (r *Registry) Authenticate(ctx context.Context, username, password string) (Credential, error) {
	c, err := r.CredentialByUsername(ctx, username)
	want := dummyHash[:]
	if err == nil {
		want = c.SecretHash
	} else if !errors.Is(err, ErrNotFound) {
		return Credential{}, err
	}
	got := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(got[:], want) != 1 || err != nil {
		return Credential{}, ErrBadCredentials
	}
	return c, nil
}

func (r *Registry) checkDefaultList(ctx context.Context, tenant, list string) (string, error) {
	if list == "" {
		list = DefaultList
	}
	if _, err := r.List(ctx, tenant, list); err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("default_list: tenant %q has no list %q", tenant, list)
		}
		return "", err
	}
	return list, nil
}

// CreatePassword issues a password credential for tenant and returns it
// with the password, which is not kept anywhere.
func (r *Registry) CreatePassword(ctx context.Context, tenant, defaultList string) (Credential, string, error) {
	list, err := r.checkDefaultList(ctx, tenant, defaultList)
	if err != nil {
		return Credential{}, "", err
	}
	now := r.Now().UTC()
	id := ids.New(now)
	password := ids.Secret(20) // 160 bits
	sum := sha256.Sum256([]byte(password))
	c := Credential{
		ID: id, Tenant: tenant, Kind: KindPassword, Username: id,
		SecretHash: sum[:], DefaultList: list, CreatedAt: now,
	}
	if err := r.CreateCredential(ctx, c); err != nil {
		return Credential{}, "", err
	}
	return c, password, nil
}

// CreateIP issues an ip credential: mail from network needs no AUTH and
// belongs to tenant.
func (r *Registry) CreateIP(ctx context.Context, tenant, network, defaultList string) (Credential, error) {
	p, err := netip.ParsePrefix(network)
	if err != nil {
		a, aerr := netip.ParseAddr(network)
		if aerr != nil {
			return Credential{}, fmt.Errorf("cidr: %q is not a network (203.0.113.0/24) or an address", network)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = p.Masked()
	list, err := r.checkDefaultList(ctx, tenant, defaultList)
	if err != nil {
		return Credential{}, err
	}
	now := r.Now().UTC()
	c := Credential{ID: ids.New(now), Tenant: tenant, Kind: KindIP, Network: p, DefaultList: list, CreatedAt: now}
	return c, r.CreateCredential(ctx, c)
}
