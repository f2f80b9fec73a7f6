package tenant

import "net/netip"

// Rows is the registry's face inside a transaction: the records a storage
// backend keeps (internal/backend/boltdb, internal/backend/postgres),
// with no rule of their own. Which tenant must exist, which names are
// taken, the ip credentials' limits, canonical networks and overlap
// check, what deleting a tenant removes and which key a rotation retires
// are this package's (DBStore); secrets arrive hashed and DKIM private
// keys sealed, and are kept as they come.
//
// Lookups of one record return ErrNotFound when there is none. Listings
// are in key order: ids and names bytewise.
type Rows interface {
	Tenant(id string) (Tenant, error)
	Tenants() ([]Tenant, error)
	// PutTenant creates or replaces t.
	PutTenant(t Tenant) error
	// DeleteTenant removes the tenant's record, nothing else.
	DeleteTenant(id string) error

	Credential(tenant, id string) (Credential, error)
	Credentials(tenant string) ([]Credential, error)
	// CredentialByUsername returns the password credential of username,
	// of any tenant.
	CredentialByUsername(username string) (Credential, error)
	// APIKey returns the API key of id, of any tenant.
	APIKey(id string) (Credential, error)
	// Networks returns the network of every ip credential with the
	// credential it belongs to, ordered by the network as written
	// (netip.Prefix.String), bytewise.
	Networks() ([]NetworkRef, error)
	// PutCredential stores c with what finds it (its username, API key
	// id or network), replacing a credential of the same tenant and id.
	PutCredential(c Credential) error
	// DeleteCredential removes c and what finds it.
	DeleteCredential(c Credential) error

	Domain(name string) (Domain, error)
	// Domains returns tenant's domains.
	Domains(tenant string) ([]Domain, error)
	// PutDomain creates or replaces d.
	PutDomain(d Domain) error
	// DeleteDomain removes the domain's record, not its keys.
	DeleteDomain(name string) error

	// Keys returns domain's keys by selector.
	Keys(domain string) ([]DKIMKey, error)
	// PutKey creates or replaces k.
	PutKey(k DKIMKey) error
	DeleteKey(domain, selector string) error
	// DeleteKeys removes every key of domain.
	DeleteKeys(domain string) error

	List(tenant, id string) (List, error)
	Lists(tenant string) ([]List, error)
	// PutList creates or replaces l.
	PutList(l List) error
	// DeleteLists removes every list of tenant.
	DeleteLists(tenant string) error
}

// NetworkRef is an ip credential's network as stored (perhaps not in its
// canonical form: records from before ParseNetwork unmapped) and the
// credential's tenant and id.
type NetworkRef struct {
	Network    netip.Prefix
	Tenant, ID string
}
