package server

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/console"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/fsutil"
	"github.com/heedmail/heed/internal/readiness"
)

// consoleUsers returns the console's accounts kept in db; their TOTP
// secrets are sealed under a key derived from the server key.
func consoleUsers(serverKey []byte, open func(seal []byte) (*consoleusers.Service, error)) (*consoleusers.Service, error) {
	seal, err := hkdf.Key(sha256.New, serverKey, nil, "heed console totp seal v1", 32)
	if err != nil {
		return nil, err
	}
	return open(seal)
}

// withConsole serves the console under /console/ beside the admin API.
// stop ends the console's open live tails, for the listener's Shutdown,
// which would otherwise wait for them.
func (r *Relay) withConsole(api http.Handler, audit admin.AuditLog, lookupTXT func(context.Context, string) ([]string, error), rd *readiness.Checker, captures admin.Captures) (h http.Handler, stop func()) {
	c := r.cfg.Console
	var nets []netip.Prefix
	for _, n := range c.AllowNetworks {
		nets = append(nets, netip.MustParsePrefix(n)) // validated by config
	}
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, console.New(console.Options{
		Users: r.consoleUsers, Tenants: r.tenants, Suppressions: r.suppressions, Events: r.events,
		Messages: r.qs, Captures: captures,
		QueueDepth:     r.qs.Depth,
		WebhookBacklog: r.hooks.Backlog,
		Audit:          audit, Changes: r.st.changes, AllowNetworks: nets,
		Hostname: r.cfg.Hostname, LookupTXT: lookupTXT, Readiness: rd,
		Webhooks:           r.hooks,
		Privacy:            r.privacy,
		MaxAttemptsPerUser: c.MaxLoginAttemptsPerUser, MaxAttemptsPerClient: c.MaxLoginAttemptsPerClient,
		AttemptWindow: c.LoginAttemptWindow, Logger: r.log, Stop: done,
	}))
	mux.Handle("/", api)
	return mux, sync.OnceFunc(func() { close(done) })
}

// demoOperator makes sure the demo's console operator exists and prints
// its sign-in. Its password and TOTP secret are kept in the data
// directory (mode 0600) so that they can be printed at every start, as
// the demo SMTP credential is; a real user's are shown once.
func (r *Relay) demoOperator(w io.Writer) error {
	const user = "demo"
	path := filepath.Join(r.cfg.DataDir, "demo-console")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		en, err := r.consoleUsers.AddUser(context.Background(), consoleusers.NewUser{Username: user, Operator: true}, nil)
		if errors.Is(err, consoleusers.ErrExists) {
			return nil // made by hand: not ours to print
		}
		if err != nil {
			return err
		}
		b = []byte(en.Password + "\n" + en.TOTPSecret + "\n")
		if err := fsutil.WriteFileSync(path, b); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	pass, secret, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	fmt.Fprintf(w, `Console          http://%s/console/
    username       %s
    password       %s
    TOTP secret    %s   (add it to an authenticator app, or: oathtool --totp -b %s)

`, r.adminAddr, user, pass, secret, secret)
	return nil
}
