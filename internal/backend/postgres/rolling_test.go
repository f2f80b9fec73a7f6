package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/tenant"
)

// nextRelease is this binary's migrations followed by one more, name
// and sql, numbered next: the schema of the release after this one.
func nextRelease(t *testing.T, name, sql string) []migration {
	t.Helper()
	fsys := fstest.MapFS{}
	real, err := embedded.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range real {
		b, err := embedded.ReadFile("migrations/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		fsys["m/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	fsys[fmt.Sprintf("m/%04d_%s.sql", len(real)+1, name)] = &fstest.MapFile{Data: []byte(sql)}
	migs, err := loadMigrations(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

// TestRollingUpgrade: in a cluster rolled node by node, a node of the
// next release migrates first; a node of this release that (re)starts
// meanwhile must start on the database and serve, as long as the newer
// migration only adds (its name starts with expand_). Here it adds a
// column the next release writes; this binary writes and reads tenants
// without knowing it, and the next release reads them too.
func TestRollingUpgrade(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	next := openTest(t, dsn, nil)
	next.migrations = nextRelease(t, "expand_tenant_notes", "ALTER TABLE tenants ADD COLUMN notes text NOT NULL DEFAULT ''")
	if err := next.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	this := openTest(t, dsn, nil) // the embedded migrations: one fewer
	if err := this.Migrate(ctx); err != nil {
		t.Fatalf("this release on a database the next one expanded: %v, want it to start", err)
	}
	store := Tenants(this.Backend())
	acme := tenant.Tenant{ID: "acme", Name: "Acme Ltd", PostalAddress: "1 Main St"}
	if err := store.CreateTenant(ctx, acme); err != nil {
		t.Fatalf("this release writing a tenant on the expanded schema: %v", err)
	}
	got, err := Tenants(next.Backend()).Tenant(ctx, "acme")
	if err != nil || got.Name != acme.Name {
		t.Fatalf("the next release reads %+v, %v; want the tenant this release wrote", got, err)
	}
	var notes string
	if err := next.pool.QueryRow(ctx, "SELECT notes FROM tenants WHERE id = 'acme'").Scan(&notes); err != nil || notes != "" {
		t.Fatalf("the added column of this release's row: %q, %v; want its default", notes, err)
	}
}

// TestRollingUpgradeRefusesContract: a newer migration that does not say
// it only adds (a contract: it drops or changes what this release uses)
// keeps this release off the database, naming it, and changes nothing.
func TestRollingUpgradeRefusesContract(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	next := openTest(t, dsn, nil)
	next.migrations = nextRelease(t, "rename_tenant_postal", "ALTER TABLE tenants RENAME COLUMN postal_address TO postal")
	if err := next.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	this := openTest(t, dsn, nil)
	err := this.Migrate(ctx)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("this release on a database the next one contracted: %v, want ErrSchemaTooNew", err)
	}
	if found, known, err := this.SchemaVersion(ctx); err != nil || found != known+1 {
		t.Fatalf("schema version %d of %d known, %v; want the next release's, untouched", found, known, err)
	}
}
