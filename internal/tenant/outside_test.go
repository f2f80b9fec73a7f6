package tenant_test

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/heedmail/heed/internal/tenant"
)

// notText are keys a client can send that no record has: a NUL, bytes
// that are not UTF-8, and both around a real id. PostgreSQL refuses them
// in a text parameter (SQLSTATE 22021); bbolt stores any bytes. Either
// way a lookup by one must answer what a lookup by an unknown key does.
var notText = []string{"a\x00b", "\xff", "acme\x00", "acme\xff", "\xc3"}

func TestLookupByKeyThatIsNotText(t *testing.T) { eachBackend(t, testLookupByKeyThatIsNotText) }

func testLookupByKeyThatIsNotText(t *testing.T, open opener) {
	r := newRegistry(t, open)
	ctx := context.Background()
	if err := r.AddDomain(ctx, Domain{Name: "acme.test", Tenant: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c, pass, err := r.CreatePassword(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(notText, c.Username+"\x00", c.Username+"\xff") {
		if _, err := r.Authenticate(ctx, k, pass); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Authenticate(%q) = %v, want ErrBadCredentials", k, err)
		}
		if _, err := r.CredentialByUsername(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Errorf("CredentialByUsername(%q) = %v, want ErrNotFound", k, err)
		}
		if _, err := r.Tenant(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Errorf("Tenant(%q) = %v, want ErrNotFound", k, err)
		}
		if _, err := r.List(ctx, "acme", k); !errors.Is(err, ErrNotFound) {
			t.Errorf("List(acme, %q) = %v, want ErrNotFound", k, err)
		}
		if _, err := r.List(ctx, k, DefaultList); !errors.Is(err, ErrNotFound) {
			t.Errorf("List(%q, default) = %v, want ErrNotFound", k, err)
		}
		if _, err := r.Domain(ctx, k+".acme.test"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Domain(%q) = %v, want ErrNotFound", k+".acme.test", err)
		}
	}
}
