package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/fsutil"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/tenant"
)

// The demo tenant of the embedded defaults.
const (
	demoTenant = "demo"
	demoDomain = "demo.example"
)

// operatorTokens returns the configured operator tokens; on the embedded
// defaults it makes one and keeps it in the data directory, so it stays the
// same across restarts.
func (r *Relay) operatorTokens() ([]string, error) {
	if len(r.cfg.Admin.Tokens) > 0 || !r.cfg.Demo {
		return r.cfg.Admin.Tokens, nil
	}
	tok, err := readOrCreate(filepath.Join(r.cfg.DataDir, "admin-token"), func() []byte {
		return []byte("heed_" + ids.Secret(20) + "\n")
	})
	if err != nil {
		return nil, err
	}
	r.cfg.Admin.Tokens = []string{strings.TrimSpace(string(tok))}
	return r.cfg.Admin.Tokens, nil
}

// demo makes sure the demo tenant, its domain and an SMTP credential
// exist, and prints how to use them. The demo password is kept in the
// data directory (mode 0600) so it can be printed at every start; real
// credentials are shown once and only their hash is kept.
func (r *Relay) demo(w io.Writer) error {
	ctx := context.Background()
	now := time.Now().UTC()
	err := r.tenants.CreateTenant(ctx, tenant.Tenant{
		ID: demoTenant, Name: "Demo Dental Practice", PostalAddress: "1 Example Street, Springfield, EX 00000", CreatedAt: now,
	})
	if err != nil && !errors.Is(err, tenant.ErrExists) {
		return err
	}
	_, _, err = r.tenants.CreateDomain(ctx, demoTenant, demoDomain)
	if err != nil && !errors.Is(err, tenant.ErrExists) {
		return err
	}
	path := filepath.Join(r.cfg.DataDir, "demo-credentials")
	user, pass := "", ""
	if b, err := os.ReadFile(path); err == nil {
		user, pass, _ = strings.Cut(strings.TrimSpace(string(b)), ":")
	}
	if _, err := r.tenants.Authenticate(ctx, user, pass); err != nil {
		c, p, err := r.tenants.CreatePassword(ctx, demoTenant, "")
		if err != nil {
			return err
		}
		user, pass = c.Username, p
		if err := fsutil.WriteFileSync(path, []byte(user+":"+pass+"\n")); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, `
Heed is running on the embedded defaults (demo mode: mail is captured, not sent).

  SMTP submission  %s   (AUTH PLAIN/LOGIN; STARTTLS offered, not required on loopback)
    username       %s
    password       %s
    sending domain %s   (tenant %q)
  Admin API        http://%s   Authorization: Bearer %s
  Captured mail    GET /api/v1/captured
  Opt-out links    http://%s/u/...   (the links in captured marketing mail work)

Try it:
  swaks --server %s --auth-user %s --auth-password %s \
        --from hello@%s --to someone@example.net
  curl -H 'Authorization: Bearer %s' http://%s/api/v1/captured

`, r.submissionAddr, user, pass, demoDomain, demoTenant,
		r.adminAddr, r.cfg.Admin.Tokens[0], r.publicAddr,
		r.submissionAddr, user, pass, demoDomain,
		r.cfg.Admin.Tokens[0], r.adminAddr)
	fmt.Fprintf(w, `Every copy is signed for %s (DKIM keys: GET /api/v1/tenants/%s/domains/%s).
A newsletter gets the marketing treatment (one-click List-Unsubscribe, opt-out
link and postal address): add --header 'X-Heed-List: marketing' to swaks.

`, demoDomain, demoTenant, demoDomain)
	return nil
}

// captureDir serves captured mail to the admin API.
type captureDir string

func (d captureDir) List() ([]outbound.Captured, error) { return outbound.ListCaptured(string(d)) }
func (d captureDir) Open(id string) (io.ReadCloser, error) {
	return outbound.OpenCaptured(string(d), id)
}

var _ admin.Captures = captureDir("")
