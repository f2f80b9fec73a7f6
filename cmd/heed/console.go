package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/tenant"
)

// consoleCmd: heed console add-user ...
func consoleCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add-user" {
		return errors.New("console: heed console add-user -username U [-operator | -tenant T -access read|read-write] [-config FILE]")
	}
	return addUserCmd(args[1:], stdout, stderr)
}

// addUserCmd creates a console user on a stopped relay's data directory
// and prints, once, the generated password and the TOTP enrolment.
func addUserCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("console add-user", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "the relay's configuration file (default: the embedded defaults' ./heed-data)")
	username := fs.String("username", "", "the user's name (a-z 0-9 . _ @ -)")
	operator := fs.Bool("operator", false, "an operator, who sees and changes everything")
	tenantID := fs.String("tenant", "", "the tenant of a tenant user")
	acc := fs.String("access", "read", "a tenant user's access: read or read-write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("console add-user: unexpected argument %q", fs.Arg(0))
	}
	nu := consoleusers.NewUser{Username: *username, Operator: *operator}
	if !*operator {
		nu.Tenant = *tenantID
		switch *acc {
		case "read", tenant.ReadOnly:
			nu.Access = tenant.ReadOnly
		case tenant.ReadWrite:
			nu.Access = tenant.ReadWrite
		default:
			return fmt.Errorf("console add-user: -access must be read or read-write (got %q)", *acc)
		}
	} else if *tenantID != "" {
		return errors.New("console add-user: an operator has no -tenant")
	}
	t := target{config: *configPath}
	d, err := t.openData()
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := context.Background()
	en, err := d.ConsoleUsers.AddUser(ctx, nu, func(id string) error {
		if _, err := d.Tenants.Tenant(ctx, id); err != nil {
			return fmt.Errorf("tenant %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("console add-user: %w", err)
	}
	role := "operator"
	if !nu.Operator {
		role = nu.Access + " user of tenant " + nu.Tenant
	}
	fmt.Fprintf(stdout, `Console user %s (%s) created. This is shown once:

  password     %s
  TOTP secret  %s
  TOTP URI     %s

Add the secret (or the URI, as a QR code) to an authenticator app; it asks
for a six-digit code after the password. oathtool --totp -b SECRET prints one.
`, nu.Username, role, en.Password, en.TOTPSecret, en.TOTPURI)
	return nil
}
