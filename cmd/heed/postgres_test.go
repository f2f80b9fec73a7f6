package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/heedproc"
)

// heedFails runs the built binary, which must exit non-zero, and returns
// its stdout and stderr.
func heedFails(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(heedproc.Binary(t), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil {
		t.Fatalf("heed %s succeeded, want a failure:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String()
}

// TestPostgresCommands: heed migrate applies the schema once (and says
// there is nothing to do on bbolt), heed check-config connects and
// compares the schema with the binary's, and refuses a database it
// cannot reach; heed backup on PostgreSQL says to use PostgreSQL's tools
// and writes nothing.
func TestPostgresCommands(t *testing.T) {
	dir := t.TempDir()
	bolt := writeConfig(t, dir, "127.0.0.1:0", "127.0.0.1:0", "pg-commands-token-0123456789", "")
	if out := heedCmd(t, dir, nil, "migrate", "-config", bolt); !strings.Contains(out, "nothing to migrate") {
		t.Errorf("heed migrate on bbolt: %q", out)
	}
	pgDir := filepath.Join(dir, "pg")
	os.Mkdir(pgDir, 0o700)
	cfg := writeConfig(t, pgDir, "127.0.0.1:0", "127.0.0.1:0", "pg-commands-token-0123456789", postgresConfig(t))

	if out := heedCmd(t, pgDir, nil, "check-config", "-config", cfg); !strings.Contains(out, "schema at version 0") || !strings.Contains(out, "will apply") {
		t.Errorf("check-config on an empty database: %q", out)
	}
	if out := heedCmd(t, pgDir, nil, "migrate", "-config", cfg); !strings.Contains(out, "migrated from version 0 to") {
		t.Errorf("heed migrate: %q", out)
	}
	if out := heedCmd(t, pgDir, nil, "migrate", "-config", cfg); !strings.Contains(out, "nothing to do") {
		t.Errorf("heed migrate again: %q", out)
	}
	if out := heedCmd(t, pgDir, nil, "check-config", "-config", cfg); !strings.Contains(out, "up to date") {
		t.Errorf("check-config after migrate: %q", out)
	}

	out := heedFails(t, pgDir, "backup", "-config", cfg, filepath.Join(pgDir, "copy.db"))
	if !strings.Contains(out, "pg_dump") {
		t.Errorf("heed backup on PostgreSQL: %q, want it to name pg_dump", out)
	}
	if _, err := os.Stat(filepath.Join(pgDir, "copy.db")); err == nil {
		t.Error("heed backup on PostgreSQL wrote a file")
	}

	// A database that is not there: check-config says so and fails.
	gone := writeConfig(t, pgDir, "127.0.0.1:0", "127.0.0.1:0", "pg-commands-token-0123456789",
		strings.Replace(postgresConfig(t), "dbname=t_", "dbname=missing_", 1))
	if out := heedFails(t, pgDir, "check-config", "-config", gone); !strings.Contains(out, "storage.postgres") {
		t.Errorf("check-config on a missing database: %q", out)
	}
}
