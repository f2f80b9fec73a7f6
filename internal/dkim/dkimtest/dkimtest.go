// Package dkimtest runs Debian's dkimpy (python3-dkim), an implementation
// of DKIM written independently of go-msgauth, over messages Heed signed,
// so that tests do not rely only on go-msgauth verifying its own
// signatures.
package dkimtest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Python is Debian's interpreter, which has python3-dkim and python3-nacl
// (for Ed25519); a python3 found on PATH may be another build without
// them.
const Python = "/usr/bin/python3"

//go:embed dkimpy_verify.py
var script []byte

// Result is dkimpy's verdict on one DKIM-Signature field.
type Result struct {
	A, D, S string
	OK      bool
	Error   string
}

// Require skips the test when dkimpy cannot run here, except in CI, which
// installs it (.ci/run) and where a skip would hide that the independent
// check stopped running.
func Require(t testing.TB) {
	t.Helper()
	out, err := exec.Command(Python, "-c", "import dkim, nacl.signing").CombinedOutput()
	if err == nil {
		return
	}
	msg := "dkimpy not available (" + Python + " with python3-dkim and python3-nacl; apt-get install python3-dkim python3-nacl): " +
		err.Error() + " " + string(bytes.TrimSpace(out))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Verify runs dkimpy once over msgs, with records (the DNS name
// "<selector>._domainkey.<domain>" → the TXT value, its strings joined as
// a resolver hands them over) as the only DNS, and returns its report on
// each signature of each message, top first.
func Verify(t testing.TB, records map[string]string, msgs ...[]byte) [][]Result {
	t.Helper()
	dir := t.TempDir()
	py := filepath.Join(dir, "dkimpy_verify.py")
	zone := filepath.Join(dir, "zone.json")
	zj, err := json.Marshal(records)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(py, script, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(zone, zj, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{py, zone}
	for i, m := range msgs {
		f := filepath.Join(dir, fmt.Sprintf("%d.eml", i))
		if err := os.WriteFile(f, m, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	cmd := exec.Command(Python, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy_verify.py: %v\n%s", err, stderr.Bytes())
	}
	var rs [][]Result
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("dkimpy_verify.py output %q: %v", out, err)
	}
	if len(rs) != len(msgs) {
		t.Fatalf("dkimpy reported on %d messages of %d", len(rs), len(msgs))
	}
	return rs
}
