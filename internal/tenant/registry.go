package tenant

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
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
	return checkSecret(c, err, password)
}

// checkSecret compares secret with the hash of c, the result (c, err) of
// looking the credential up, in constant time: a credential that was not
// found is compared against dummyHash, so a miss costs what a wrong secret
// does. Lookup errors other than ErrNotFound pass through.
func checkSecret(c Credential, err error, secret string) (Credential, error) {
	want := dummyHash[:]
	switch {
	case err == nil:
		want = c.SecretHash
	case !errors.Is(err, ErrNotFound):
		return Credential{}, err
	}
	got := sha256.Sum256([]byte(secret))
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

// APIKeyPrefix starts every API key: "heed_" + the key's id + "_" + the
// secret, so a key names its own record and a leaked one is recognisable.
const APIKeyPrefix = "heed_"

// CreateAPIKey issues an API key of tenant with access ReadOnly or
// ReadWrite and returns it with the key, which is kept only as a SHA-256
// hash (it is a random 160-bit secret: a slow hash would buy nothing).
func (r *Registry) CreateAPIKey(ctx context.Context, tenant, access, name string) (Credential, string, error) {
	if access != ReadOnly && access != ReadWrite {
		return Credential{}, "", fmt.Errorf("access must be %q or %q", ReadOnly, ReadWrite)
	}
	if len(name) > 100 {
		return Credential{}, "", errors.New("name: at most 100 bytes")
	}
	now := r.Now().UTC()
	id := ids.New(now)
	secret := ids.Secret(20)
	sum := sha256.Sum256([]byte(secret))
	c := Credential{ID: id, Tenant: tenant, Kind: KindAPIKey, SecretHash: sum[:], Access: access, Name: name, CreatedAt: now}
	if err := r.CreateCredential(ctx, c); err != nil {
		return Credential{}, "", err
	}
	return c, APIKeyPrefix + id + "_" + secret, nil
}

// AuthenticateAPIKey returns the API key a bearer token is, comparing in
// constant time; ErrBadCredentials when it is none.
func (r *Registry) AuthenticateAPIKey(ctx context.Context, token string) (Credential, error) {
	rest, ok := strings.CutPrefix(token, APIKeyPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	var c Credential
	err := ErrNotFound
	if ok && ok2 && ValidID(id) == nil {
		c, err = r.APIKey(ctx, id)
	}
	return checkSecret(c, err, secret)
}

// CreateIP issues an ip credential within OperatorNetworks: mail from
// network needs no AUTH and belongs to tenant.
func (r *Registry) CreateIP(ctx context.Context, tenant, network, defaultList string) (Credential, error) {
	return r.CreateIPWithin(ctx, OperatorNetworks, tenant, network, defaultList)
}

// CreateIPWithin issues an ip credential whose network (ParseNetwork) is
// within limit; errors wrapping ErrNetworkRefused say why not, and
// ErrTooManyNetworks when tenant already holds limit.MaxPerTenant.
func (r *Registry) CreateIPWithin(ctx context.Context, limit NetworkLimit, tenant, network, defaultList string) (Credential, error) {
	p, err := ParseNetwork(network)
	if err != nil {
		return Credential{}, err
	}
	if err := limit.Check(p); err != nil {
		return Credential{}, err
	}
	list, err := r.checkDefaultList(ctx, tenant, defaultList)
	if err != nil {
		return Credential{}, err
	}
	now := r.Now().UTC()
	c := Credential{ID: ids.New(now), Tenant: tenant, Kind: KindIP, Network: p, DefaultList: list, CreatedAt: now}
	return c, r.CreateIPCredential(ctx, c, limit.MaxPerTenant)
}

// SaveList creates l or replaces the list of that id, keeping a replaced
// list's CreatedAt, and returns the list as saved and whether it was
// created: the rule of the API's PUT of a list and of the console's list
// form. Within a shared transaction (txn.WithJoin) the read and the write
// are one change.
func (r *Registry) SaveList(ctx context.Context, l List) (saved List, created bool, err error) {
	old, err := r.List(ctx, l.Tenant, l.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		created = true
	case err != nil:
		return l, false, err
	default:
		l.CreatedAt = old.CreatedAt
	}
	return l, created, r.PutList(ctx, l)
}
