// Package tenant is the registry of Heed's tenants (the subscriber
// businesses) and what each owns: sending domains with their DKIM keys,
// lists and SMTP credentials.
//
// DKIM private keys are stored encrypted (AES-GCM under a key derived from
// the server key), bound to their domain and selector.
//
// Password credentials are random secrets of 160 bits that Heed generates
// and shows once; they are stored as a SHA-256 hash and compared in
// constant time. A slow password hash (bcrypt, scrypt) protects guessable
// human passwords; for a random secret it buys nothing and would cost tens
// of milliseconds of CPU on every AUTH. IP credentials name a network whose
// mail needs no AUTH; no two tenants' networks may overlap.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors the store returns; callers map them to replies.
var (
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrBadCredentials = errors.New("invalid credentials")
)

// Tenant is one subscriber business.
type Tenant struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	PostalAddress string    `json:"postal_address"`
	CreatedAt     time.Time `json:"created_at"`
}

// Credential kinds. Password and ip credentials submit mail; API keys
// call the admin API for their tenant.
const (
	KindPassword = "password"
	KindIP       = "ip"
	KindAPIKey   = "api_key"
)

// Access of an API key.
const (
	ReadOnly  = "read-only"
	ReadWrite = "read-write"
)

// Credential lets an app submit mail for a tenant.
type Credential struct {
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	Kind     string `json:"kind"`
	Username string `json:"username,omitempty"`
	// SecretHash is SHA-256 of the password; never serialised to clients.
	SecretHash  []byte       `json:"secret_hash,omitempty"`
	Network     netip.Prefix `json:"cidr,omitzero"`
	DefaultList string       `json:"default_list,omitempty"`
	// Access and Name are an API key's.
	Access    string    `json:"access,omitempty"`
	Name      string    `json:"name,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Domain is a sending domain owned by exactly one tenant.
type Domain struct {
	Name      string    `json:"domain"`
	Tenant    string    `json:"tenant"`
	CreatedAt time.Time `json:"created_at"`
}

// List kinds.
const (
	Marketing     = "marketing"
	Transactional = "transactional"
)

// List is a stream of mail of one kind; suppressions and opt-outs are per
// list.
type List struct {
	Tenant string `json:"tenant"`
	ID     string `json:"id"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	// Unsubscribe makes a transactional list carry List-Unsubscribe too.
	Unsubscribe bool      `json:"unsubscribe"`
	CreatedAt   time.Time `json:"created_at"`
}

// DefaultLists are created with every tenant; a credential without a
// default list sends to DefaultList.
var DefaultLists = []List{
	{ID: "transactional", Name: "Transactional", Kind: Transactional},
	{ID: "marketing", Name: "Marketing", Kind: Marketing},
}

// DefaultList is the list mail goes to without X-Heed-List or a
// credential default.
const DefaultList = "transactional"

// Store keeps the registry. Every method is scoped by tenant except the
// lookups SMTP needs before it knows the tenant (by username, by client
// address, by domain).
type Store interface {
	CreateTenant(ctx context.Context, t Tenant) error
	Tenant(ctx context.Context, id string) (Tenant, error)
	Tenants(ctx context.Context) ([]Tenant, error)
	UpdateTenant(ctx context.Context, t Tenant) error
	// DeleteTenant removes the tenant with its credentials, domains and lists.
	DeleteTenant(ctx context.Context, id string) error

	CreateCredential(ctx context.Context, c Credential) error
	// CreateIPCredential stores an ip credential as CreateCredential
	// does, unless its tenant already holds max ip credentials or more
	// (ErrTooManyNetworks; max 0 is no limit), checked in the same
	// transaction.
	CreateIPCredential(ctx context.Context, c Credential, max int) error
	Credentials(ctx context.Context, tenant string) ([]Credential, error)
	DeleteCredential(ctx context.Context, tenant, id string) error
	CredentialByUsername(ctx context.Context, username string) (Credential, error)
	// CredentialForAddr returns the ip credential whose network holds addr.
	CredentialForAddr(ctx context.Context, addr netip.Addr) (Credential, error)
	// APIKey returns the API key of id, of any tenant.
	APIKey(ctx context.Context, id string) (Credential, error)

	// AddDomain stores d with its first DKIM keys, in one transaction.
	AddDomain(ctx context.Context, d Domain, keys ...DKIMKey) error
	Domain(ctx context.Context, name string) (Domain, error)
	Domains(ctx context.Context, tenant string) ([]Domain, error)
	// DeleteDomain removes the domain and its keys.
	DeleteDomain(ctx context.Context, tenant, name string) error

	// PutKey stores a key of an existing domain (created or replaced).
	PutKey(ctx context.Context, k DKIMKey) error
	// Keys returns the keys of a domain, oldest first.
	Keys(ctx context.Context, domain string) ([]DKIMKey, error)
	// ActivateKey makes a key the one its algorithm signs with and retires
	// the key it replaces, in one transaction.
	ActivateKey(ctx context.Context, domain, selector string, at time.Time) error
	// DeleteKey removes a key that is not active (ErrActiveKey otherwise).
	DeleteKey(ctx context.Context, domain, selector string) error

	PutList(ctx context.Context, l List) error
	List(ctx context.Context, tenant, id string) (List, error)
	Lists(ctx context.Context, tenant string) ([]List, error)
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidID checks a tenant or list id: 1 to 63 of a-z, 0-9, '-' and '_',
// starting with a letter or digit.
func ValidID(s string) error {
	if !idRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid id: use 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit", s)
	}
	return nil
}

// ValidText checks free text an operator or tenant names a record with
// (a tenant's name and postal address, a list's or API key's name): it
// must be UTF-8 and hold no NUL. PostgreSQL refuses either in text, and
// both backends must keep the same records.
func ValidText(s string) error {
	switch {
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return errors.New("holds a NUL character")
	}
	return nil
}

// ValidKind checks a list kind.
func ValidKind(k string) error {
	if k != Marketing && k != Transactional {
		return fmt.Errorf("kind must be %q or %q", Marketing, Transactional)
	}
	return nil
}

// NormalizeDomain lowercases a domain and checks its syntax (RFC 1035
// labels; internationalised names must be given in their A-label form).
func NormalizeDomain(s string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if len(d) == 0 || len(d) > 253 {
		return "", fmt.Errorf("%q is not a valid domain name", s)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("%q is not a fully qualified domain name", s)
	}
	for _, l := range labels {
		if !validLabel(l) {
			return "", fmt.Errorf("%q is not a valid domain name", s)
		}
	}
	return d, nil
}

func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
