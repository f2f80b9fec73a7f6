package admin

import (
	"context"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/backend/boltdb"
)

// TestAuditEraseOldRecords: records written before auditTarget normalised
// addresses, holding them as sent, are found by the normalised address
// all the same; records about other addresses are left alone.
func TestAuditEraseOldRecords(t *testing.T) {
	e := newEnv(t)
	a := boltdb.Audit(e.db)
	ctx := context.Background()
	const route = "PUT /api/v1/tenants/:tenant/suppressions/:address"
	for _, target := range []string{
		"/api/v1/tenants/acme/suppressions/uli@bücher.example",
		"/api/v1/tenants/acme/suppressions/ULI@XN--BCHER-KVA.EXAMPLE",
		"/api/v1/tenants/acme/suppressions/uli%40b%C3%BCcher.example",
		"/api/v1/tenants/acme/suppressions/bob@example.net",
	} {
		if err := a.Append(ctx, &AuditRecord{Action: route, Tenant: "acme", Target: target}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.Erase(ctx, "uli@xn--bcher-kva.example")
	if err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v, want 3", n, err)
	}
	recs, err := a.Records(ctx, "", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		erased := strings.HasSuffix(r.Target, "/suppressions/[erased]")
		if erased != (i < 3) || r.Action != route {
			t.Errorf("record %d: %+v", i, r)
		}
	}
}
