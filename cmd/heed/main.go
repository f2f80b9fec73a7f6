// Command heed is the Heed relay: `heed serve` runs every listener in one
// process; the other subcommands are operator tools. This file only parses
// the command line; serve.go wires the parts together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

const usage = `Usage: heed <command> [flags]

Commands:
  serve [-config FILE]          run the relay (embedded defaults without -config)
  check-config -config FILE     validate a configuration file and print it;
                                on PostgreSQL, connect and compare the schema
  migrate -config FILE          apply the PostgreSQL schema migrations and exit
  version                       print the version and the DKIM RSA signer built in

Operator commands, on a serving relay's admin API (-api URL, token in
-token or HEED_ADMIN_TOKEN) or on a stopped relay's data directory
(-config FILE, or the embedded defaults' ./heed-data without):
  backup [-api URL | -config FILE] OUT
                                a consistent copy of the database
  suppress import -tenant T [-dry-run] FILE
                                import a CSV of suppressions (address[,list,reason])
  suppress export -tenant T [-list L] [-reason R] [-since TIME] [-out FILE]
                                export a tenant's suppressions as CSV
  dkim keygen [-algorithm rsa|ed25519] [-domain D] [-selector S] [-out FILE]
                                make a DKIM key and print its DNS record
  console add-user -username U [-operator | -tenant T -access read|read-write]
                                a console user (stopped relay only); prints
                                the password and TOTP secret once
  readiness -domain D [-tenant T] -api URL [-json]
                                is a sending domain ready for Gmail and Yahoo?
                                (serving relay only; exit 1 when not)

  storage copy -from CONFIG -to CONFIG
                                move a stopped relay's bbolt data directory into
                                an empty PostgreSQL database and verify the copy

  report classify FILE...       read saved bounces and complaints and print,
                                as JSON, what each says and what Heed would do
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(args[1:], stdout, stderr)
	case "check-config":
		err = checkConfigCmd(args[1:], stdout, stderr)
	case "migrate":
		err = migrateCmd(args[1:], stdout, stderr)
	case "backup":
		err = backupCmd(args[1:], stdout, stderr)
	case "suppress":
		err = suppressCmd(args[1:], stdout, stderr)
	case "dkim":
		err = dkimCmd(args[1:], stdout, stderr)
	case "report":
		err = reportCmd(args[1:], stdout, stderr)
	case "readiness":
		err = readinessCmd(args[1:], stdout, stderr)
	case "console":
		err = consoleCmd(args[1:], stdout, stderr)
	case "storage":
		err = storageCmd(args[1:], stdout, stderr)
	case "version":
		// The signer is a build choice (cgo and OpenSSL, or pure Go) an
		// operator may need to confirm without starting the relay.
		fmt.Fprintf(stdout, "heed %s\nDKIM RSA signer: %s\n", version, dkim.RSASigner())
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "heed: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "heed:", err)
		return 1
	}
	return 0
}

// loadConfig reads FILE, or returns the embedded defaults when path is "".
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		cfg := config.Embedded()
		cfg.ApplyEnv(os.Getenv)
		return cfg, cfg.Validate()
	}
	return config.Load(path)
}

func checkConfigCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("check-config: -config FILE is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: OK\n", *path)
	if err := printConfig(stdout, cfg.Redacted()); err != nil {
		return err
	}
	return checkDatabase(stdout, cfg)
}
