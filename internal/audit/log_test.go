package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/store"
)

// The tests of this file are the audit log's conformance suite, run on
// every storage backend (docs/storage.md).

func TestMain(m *testing.M) { pgtest.Main(m) }

var backends = []struct {
	name string
	open func(t *testing.T) *Log
}{
	{"bbolt", func(t *testing.T) *Log {
		db, err := store.Open(filepath.Join(t.TempDir(), "heed.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return boltdb.Audit(db)
	}},
	{"postgres", func(t *testing.T) *Log {
		db := backendtest.OpenPostgres(t, 0)
		return postgres.Audit(db.Backend())
	}},
}

func eachBackend(t *testing.T, fn func(t *testing.T, l *Log)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

// TestAppendAndPage: records come back oldest first, paged by after=,
// per tenant or all.
func TestAppendAndPage(t *testing.T) {
	eachBackend(t, func(t *testing.T, l *Log) {
		ctx := context.Background()
		for i := range 6 {
			tn := "acme"
			if i%2 == 1 {
				tn = "other"
			}
			r := &Record{Tenant: tn, Actor: "operator:1234", Action: "PUT /x", Target: fmt.Sprintf("/x/%d", i), Status: 200}
			if err := l.Append(ctx, r); err != nil || r.Seq == 0 {
				t.Fatalf("Append: seq %d, %v", r.Seq, err)
			}
		}
		all, err := l.Records(ctx, "", 0, 4)
		if err != nil || len(all) != 4 || all[0].Target != "/x/0" || all[3].Target != "/x/3" {
			t.Fatalf("first page: %+v, %v", all, err)
		}
		rest, _ := l.Records(ctx, "", all[3].Seq, 4)
		if len(rest) != 2 || rest[1].Target != "/x/5" {
			t.Errorf("second page: %+v", rest)
		}
		acme, _ := l.Records(ctx, "acme", 0, 10)
		if len(acme) != 3 {
			t.Fatalf("acme's: %+v", acme)
		}
		for _, r := range acme {
			if r.Tenant != "acme" {
				t.Errorf("another tenant's record: %+v", r)
			}
		}
	})
}

// TestEraseEverySpelling: records naming an address in any spelling (as
// sent before the API normalised it) are erased by the normalised address;
// records about other addresses are left alone.
func TestEraseEverySpelling(t *testing.T) {
	eachBackend(t, func(t *testing.T, l *Log) {
		ctx := context.Background()
		const route = "PUT /api/v1/tenants/:tenant/suppressions/:address"
		for _, target := range []string{
			"/api/v1/tenants/acme/suppressions/uli@bücher.example",
			"/api/v1/tenants/acme/suppressions/ULI@XN--BCHER-KVA.EXAMPLE",
			"/api/v1/tenants/acme/suppressions/uli%40b%C3%BCcher.example",
			"/api/v1/tenants/acme/suppressions/bob@example.net",
		} {
			if err := l.Append(ctx, &Record{Action: route, Tenant: "acme", Target: target}); err != nil {
				t.Fatal(err)
			}
		}
		n, err := l.Erase(ctx, "uli@xn--bcher-kva.example")
		if err != nil || n != 3 {
			t.Fatalf("Erase = %d, %v, want 3", n, err)
		}
		recs, err := l.Records(ctx, "", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			erased := strings.HasSuffix(r.Target, "/suppressions/[erased]")
			if erased != (i < 3) || r.Action != route || strings.Contains(strings.ToLower(r.Target), "uli") {
				t.Errorf("record %d: %+v", i, r)
			}
		}
		if acme, _ := l.Records(ctx, "acme", 0, 10); len(acme) != 4 {
			t.Errorf("the erasure changed the records' tenant: %+v", acme)
		}
	})
}
