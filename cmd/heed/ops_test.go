package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/heedproc"
	"github.com/heedmail/heed/internal/server"
	"github.com/heedmail/heed/suppression"
)

// heedCmd runs the built binary and returns its stdout, failing on a
// non-zero exit.
func heedCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(heedproc.Binary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("heed %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// TestOperatorCommands: on a serving relay, `heed suppress import` and
// `export` through the API, and `heed backup` takes a consistent copy
// that opens as a data directory; on the stopped relay the same commands
// work on the data directory; `heed dkim keygen` makes a key whose record
// matches it.
func TestOperatorCommands(t *testing.T) {
	dir := t.TempDir()
	smtpAddr, adminAddr := freePort(t), freePort(t)
	const token = "ops-test-operator-token-0123456789"
	cfgPath := writeConfig(t, dir, smtpAddr, adminAddr, token, "delivery: { mode: capture }\n")
	p := startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p, adminAddr)
	api(t, adminAddr, token, "POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme"})

	csvPath := filepath.Join(dir, "optouts.csv")
	var b strings.Builder
	b.WriteString("address,list,reason\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "reader-%d@example.net,marketing,unsubscribe\n", i)
	}
	b.WriteString("not an address,,\n")
	// Entries of another reason, for the filtered exports to leave out.
	for i := range 5 {
		fmt.Fprintf(&b, "blocked-%d@example.net,marketing,manual\n", i)
	}
	os.WriteFile(csvPath, []byte(b.String()), 0o600)
	env := []string{"HEED_ADMIN_TOKEN=" + token}
	rep := heedCmd(t, dir, env, "suppress", "import", "-api", "http://"+adminAddr, "-tenant", "acme", csvPath)
	if !strings.Contains(rep, `"added": 3005`) || !strings.Contains(rep, `"line": 3002`) {
		t.Fatalf("import report:\n%s", rep)
	}
	if all := heedCmd(t, dir, env, "suppress", "export", "-api", "http://"+adminAddr, "-tenant", "acme"); strings.Count(all, "\n") != 3006 {
		t.Fatalf("export has %d lines, want 3006", strings.Count(all, "\n"))
	}
	exported := heedCmd(t, dir, env, "suppress", "export", "-api", "http://"+adminAddr, "-tenant", "acme", "-reason", "unsubscribe")
	if n := strings.Count(exported, "\n"); n != 3001 || strings.Contains(exported, ",manual,") {
		t.Fatalf("the unsubscribes' export has %d lines (want 3001), manual entries: %v", n, strings.Contains(exported, ",manual,"))
	}

	// A backup while serving opens, checks, and holds the tenant's list.
	backup := filepath.Join(dir, "backup.db")
	heedCmd(t, dir, env, "backup", "-api", "http://"+adminAddr, backup)
	restored := filepath.Join(dir, "restored")
	os.MkdirAll(filepath.Join(restored, "keys"), 0o700)
	raw, _ := os.ReadFile(backup)
	os.WriteFile(filepath.Join(restored, "heed.db"), raw, 0o600)
	key, _ := os.ReadFile(filepath.Join(dir, "data", "keys", "server.key"))
	os.WriteFile(filepath.Join(restored, "keys", "server.key"), key, 0o600)
	cfg := config.Default()
	cfg.DataDir = restored
	d, err := server.OpenData(cfg) // opens only a consistent file
	if err != nil {
		t.Fatal(err)
	}
	n, err := suppression.ExportCSV(context.Background(), d.Suppressions, "acme", io.Discard, suppression.ExportOptions{})
	if err != nil {
		t.Fatalf("the restored list: %v", err)
	}
	if n != 3005 {
		t.Fatalf("the restored list has %d entries, want 3005", n)
	}
	d.Close()

	// While it serves, the data directory is not for the commands.
	cmd := exec.Command(heedproc.Binary(t), "suppress", "export", "-config", cfgPath, "-tenant", "acme")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "use -api") {
		t.Errorf("an offline command on a serving relay: %v %s", err, out)
	}
	p.Cmd.Process.Kill()
	<-p.Exited
	offline := heedCmd(t, dir, nil, "suppress", "export", "-config", cfgPath, "-tenant", "acme", "-reason", "unsubscribe")
	if offline != exported {
		t.Errorf("the offline export differs from the API's")
	}
	rep = heedCmd(t, dir, nil, "suppress", "import", "-config", cfgPath, "-tenant", "acme", csvPath)
	if !strings.Contains(rep, `"existing": 3005`) {
		t.Errorf("offline re-import:\n%s", rep)
	}
	heedCmd(t, dir, nil, "backup", "-config", cfgPath, filepath.Join(dir, "offline.db"))

	// dkim keygen: the key parses and the record is its public key.
	keyPath := filepath.Join(dir, "dkim.pem")
	rec := heedCmd(t, dir, nil, "dkim", "keygen", "-algorithm", "ed25519", "-domain", "acme.test", "-selector", "s1", "-out", keyPath)
	pemKey, _ := os.ReadFile(keyPath)
	k, err := dkim.ParsePEM(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := dkim.TXTRecord(k.Public())
	if !strings.HasPrefix(rec, "s1._domainkey.acme.test. IN TXT") || !strings.Contains(rec, txt) {
		t.Errorf("record %q does not publish the key (%s)", rec, txt)
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode())
	}
}

// TestProgressShown: a large import shows its progress and ends at 100%;
// a large export to a file shows its row count; small ones show nothing.
func TestProgressShown(t *testing.T) {
	var shown bytes.Buffer
	data := strings.Repeat("reader@example.net\n", 100000) // 1.9 MB
	p := &progress{r: strings.NewReader(data), total: int64(len(data)), w: &shown, what: "importing x.csv"}
	if _, err := io.Copy(io.Discard, p); err != nil {
		t.Fatal(err)
	}
	p.done()
	if out := shown.String(); !strings.Contains(out, "importing x.csv:") || !strings.HasSuffix(out, "100% (1 MiB), done\n") {
		t.Errorf("import progress: %q", out)
	}
	shown.Reset()
	c := &rowCounter{w: io.Discard, show: &shown, what: "exporting y.csv"}
	io.WriteString(c, "address,list\n"+data)
	c.done()
	if out := shown.String(); !strings.HasSuffix(out, "exporting y.csv: 100000 rows, done\n") {
		t.Errorf("export progress: %q", out)
	}
	shown.Reset()
	small := &progress{r: strings.NewReader("a@b.example\n"), total: 12, w: &shown}
	io.Copy(io.Discard, small)
	small.done()
	if shown.Len() != 0 {
		t.Errorf("a small file showed %q", shown.String())
	}
	few := &rowCounter{w: io.Discard, show: &shown, what: "exporting z.csv"}
	io.WriteString(few, "address,list\na@b.example,\n")
	few.done()
	if shown.Len() != 0 {
		t.Errorf("a small export showed %q", shown.String())
	}
}
