package postgres

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
)

// tenantRows is tenant.Rows in PostgreSQL (tables tenants, credentials,
// domains, dkim_keys and lists, migration 0003). Secrets arrive as their
// SHA-256 and DKIM private keys sealed, and are stored so.
//
// Every write runs in Update's SERIALIZABLE transaction, which is what
// makes the registry's read-then-write rules safe without explicit
// locks: of two concurrent creates of overlapping ip networks of two
// tenants, each reads every network (tenant.DBStore's overlap check) and
// inserts one the other read past, and PostgreSQL fails one of them with
// a serialization failure; run again, it finds the other's network and
// is refused. The cap on a tenant's ip credentials holds the same way.
type tenantRows struct{ t *Tx }

// Tenants implements backend.Tx.
func (t *Tx) Tenants() tenant.Rows { return tenantRows{t} }

// Tenants returns the tenant registry's store kept by b, with the read
// cache every store over b shares. The cache sees this process's writes
// at once, and the other nodes' when their notice arrives (Cluster).
func Tenants(b *Backend) *tenant.DBStore {
	b.tenantOnce.Do(func() { b.tenantCache = tenant.NewCache() })
	return tenant.NewDBStore(txn.Narrow[backend.Tx, tenant.Rows](b, func(t backend.Tx) tenant.Rows { return t.Tenants() }), b.tenantCache)
}

func (r tenantRows) exec(sql string, args ...any) error {
	_, err := r.t.tx.Exec(r.t.ctx, sql, args...)
	return err
}

// write is exec of a statement that changes the registry: the other
// nodes on the database hear of it (kind, and the tenant or the domain
// it changed) when this transaction commits, and drop their caches
// (Tx.announce, cluster.go).
func (r tenantRows) write(kind, subject, sql string, args ...any) error {
	if err := r.exec(sql, args...); err != nil {
		return err
	}
	return r.t.announce(kind, subject)
}

// collect runs a query and scans each row with scan.
func tenantQuery[T any](r tenantRows, scan func(pgx.CollectableRow) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := r.t.tx.Query(r.t.ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scan)
}

// one is collect of at most one row: tenant.ErrNotFound when there is none.
func tenantQueryOne[T any](r tenantRows, scan func(pgx.CollectableRow) (T, error), sql string, args ...any) (T, error) {
	out, err := tenantQuery(r, scan, sql, args...)
	if err == nil && len(out) == 0 {
		err = tenant.ErrNotFound
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return out[0], nil
}

// nullTime is NULL for the zero time, which the records use for "never".
func tenantNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func tenantUTC(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

const tenantCols = "id, name, postal_address, created_at"

func scanTenant(row pgx.CollectableRow) (t tenant.Tenant, err error) {
	err = row.Scan(&t.ID, &t.Name, &t.PostalAddress, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, err
}

func (r tenantRows) Tenant(id string) (tenant.Tenant, error) {
	return tenantQueryOne(r, scanTenant, "SELECT "+tenantCols+" FROM tenants WHERE id = $1", id)
}

func (r tenantRows) Tenants() ([]tenant.Tenant, error) {
	return tenantQuery(r, scanTenant, "SELECT "+tenantCols+" FROM tenants ORDER BY id")
}

func (r tenantRows) PutTenant(t tenant.Tenant) error {
	return r.write("tenant", t.ID, `INSERT INTO tenants (`+tenantCols+`) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET name = $2, postal_address = $3, created_at = $4`,
		t.ID, t.Name, t.PostalAddress, t.CreatedAt)
}

func (r tenantRows) DeleteTenant(id string) error {
	return r.write("tenant", id, "DELETE FROM tenants WHERE id = $1", id)
}

const credentialCols = "tenant, id, kind, username, secret_hash, network, default_list, access, name, created_at"

func scanCredential(row pgx.CollectableRow) (c tenant.Credential, err error) {
	var network string
	if err := row.Scan(&c.Tenant, &c.ID, &c.Kind, &c.Username, &c.SecretHash, &network,
		&c.DefaultList, &c.Access, &c.Name, &c.CreatedAt); err != nil {
		return c, err
	}
	c.CreatedAt = c.CreatedAt.UTC()
	if network != "" {
		if c.Network, err = netip.ParsePrefix(network); err != nil {
			return c, fmt.Errorf("credential %s of %s: %w", c.ID, c.Tenant, err)
		}
	}
	return c, nil
}

func (r tenantRows) Credential(tenantID, id string) (tenant.Credential, error) {
	return tenantQueryOne(r, scanCredential, "SELECT "+credentialCols+" FROM credentials WHERE tenant = $1 AND id = $2", tenantID, id)
}

func (r tenantRows) Credentials(tenantID string) ([]tenant.Credential, error) {
	return tenantQuery(r, scanCredential, "SELECT "+credentialCols+" FROM credentials WHERE tenant = $1 ORDER BY id", tenantID)
}

func (r tenantRows) CredentialByUsername(username string) (tenant.Credential, error) {
	return tenantQueryOne(r, scanCredential, "SELECT "+credentialCols+
		" FROM credentials WHERE username = $1 AND kind NOT IN ('ip', 'api_key')", username)
}

func (r tenantRows) APIKey(id string) (tenant.Credential, error) {
	return tenantQueryOne(r, scanCredential, "SELECT "+credentialCols+" FROM credentials WHERE id = $1 AND kind = 'api_key'", id)
}

// Networks implements tenant.Rows. Of two credentials of one tenant with
// the same network, the later (ids grow with time) comes first, as on
// bbolt, whose index points at the later one.
func (r tenantRows) Networks() ([]tenant.NetworkRef, error) {
	return tenantQuery(r, func(row pgx.CollectableRow) (n tenant.NetworkRef, err error) {
		var network string
		if err := row.Scan(&network, &n.Tenant, &n.ID); err != nil {
			return n, err
		}
		if n.Network, err = netip.ParsePrefix(network); err != nil {
			return n, fmt.Errorf("credential %s of %s: %w", n.ID, n.Tenant, err)
		}
		return n, nil
	}, "SELECT network, tenant, id FROM credentials WHERE kind = 'ip' ORDER BY network, id DESC")
}

// PutCredential implements tenant.Rows. A username or API key id another
// credential holds, which tenant.DBStore checks first, is ErrExists here
// too.
func (r tenantRows) PutCredential(c tenant.Credential) error {
	network := ""
	if c.Network.IsValid() {
		network = c.Network.String()
	}
	err := r.write("credential", c.Tenant, `INSERT INTO credentials (`+credentialCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (tenant, id) DO UPDATE SET kind = $3, username = $4, secret_hash = $5, network = $6,
			default_list = $7, access = $8, name = $9, created_at = $10`,
		c.Tenant, c.ID, c.Kind, c.Username, c.SecretHash, network, c.DefaultList, c.Access, c.Name, c.CreatedAt)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return fmt.Errorf("%w: %s", tenant.ErrExists, pe.Message)
	}
	return err
}

func (r tenantRows) DeleteCredential(c tenant.Credential) error {
	return r.write("credential", c.Tenant, "DELETE FROM credentials WHERE tenant = $1 AND id = $2", c.Tenant, c.ID)
}

func scanDomain(row pgx.CollectableRow) (d tenant.Domain, err error) {
	err = row.Scan(&d.Name, &d.Tenant, &d.CreatedAt)
	d.CreatedAt = d.CreatedAt.UTC()
	return d, err
}

func (r tenantRows) Domain(name string) (tenant.Domain, error) {
	return tenantQueryOne(r, scanDomain, "SELECT name, tenant, created_at FROM domains WHERE name = $1", name)
}

func (r tenantRows) Domains(tenantID string) ([]tenant.Domain, error) {
	return tenantQuery(r, scanDomain, "SELECT name, tenant, created_at FROM domains WHERE tenant = $1 ORDER BY name", tenantID)
}

func (r tenantRows) PutDomain(d tenant.Domain) error {
	return r.write("domain", d.Tenant, `INSERT INTO domains (name, tenant, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET tenant = $2, created_at = $3`, d.Name, d.Tenant, d.CreatedAt)
}

func (r tenantRows) DeleteDomain(name string) error {
	return r.write("domain", name, "DELETE FROM domains WHERE name = $1", name)
}

const dkimKeyCols = "domain, selector, algorithm, state, txt, sealed, created_at, activated_at, retired_at"

func scanDKIMKey(row pgx.CollectableRow) (k tenant.DKIMKey, err error) {
	var activated, retired *time.Time
	err = row.Scan(&k.Domain, &k.Selector, &k.Algorithm, &k.State, &k.TXT, &k.Sealed, &k.CreatedAt, &activated, &retired)
	k.CreatedAt, k.ActivatedAt, k.RetiredAt = k.CreatedAt.UTC(), tenantUTC(activated), tenantUTC(retired)
	return k, err
}

func (r tenantRows) Keys(domain string) ([]tenant.DKIMKey, error) {
	return tenantQuery(r, scanDKIMKey, "SELECT "+dkimKeyCols+" FROM dkim_keys WHERE domain = $1 ORDER BY selector", domain)
}

func (r tenantRows) PutKey(k tenant.DKIMKey) error {
	return r.write("dkim_key", k.Domain, `INSERT INTO dkim_keys (`+dkimKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (domain, selector) DO UPDATE SET algorithm = $3, state = $4, txt = $5, sealed = $6,
			created_at = $7, activated_at = $8, retired_at = $9`,
		k.Domain, k.Selector, k.Algorithm, k.State, k.TXT, k.Sealed, k.CreatedAt, tenantNullTime(k.ActivatedAt), tenantNullTime(k.RetiredAt))
}

func (r tenantRows) DeleteKey(domain, selector string) error {
	return r.write("dkim_key", domain, "DELETE FROM dkim_keys WHERE domain = $1 AND selector = $2", domain, selector)
}

func (r tenantRows) DeleteKeys(domain string) error {
	return r.write("dkim_key", domain, "DELETE FROM dkim_keys WHERE domain = $1", domain)
}

const listCols = "tenant, id, name, kind, unsubscribe, created_at"

func scanList(row pgx.CollectableRow) (l tenant.List, err error) {
	err = row.Scan(&l.Tenant, &l.ID, &l.Name, &l.Kind, &l.Unsubscribe, &l.CreatedAt)
	l.CreatedAt = l.CreatedAt.UTC()
	return l, err
}

func (r tenantRows) List(tenantID, id string) (tenant.List, error) {
	return tenantQueryOne(r, scanList, "SELECT "+listCols+" FROM lists WHERE tenant = $1 AND id = $2", tenantID, id)
}

func (r tenantRows) Lists(tenantID string) ([]tenant.List, error) {
	return tenantQuery(r, scanList, "SELECT "+listCols+" FROM lists WHERE tenant = $1 ORDER BY id", tenantID)
}

func (r tenantRows) PutList(l tenant.List) error {
	return r.write("list", l.Tenant, `INSERT INTO lists (`+listCols+`) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant, id) DO UPDATE SET name = $3, kind = $4, unsubscribe = $5, created_at = $6`,
		l.Tenant, l.ID, l.Name, l.Kind, l.Unsubscribe, l.CreatedAt)
}

func (r tenantRows) DeleteLists(tenantID string) error {
	return r.write("list", tenantID, "DELETE FROM lists WHERE tenant = $1", tenantID)
}
