// Package deploy holds the files an operator installs beside the binary
// (docs/cluster.md): the systemd unit. Its tests check that the unit
// parses and keeps its hardening.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitHardening: the unit keeps the settings docs/cluster.md
// promises; a change that drops one fails here, not on a server.
func TestUnitHardening(t *testing.T) {
	f, err := os.Open("heed.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = v
		}
	}
	for k, want := range map[string]string{
		"User": "heed", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "ReadWritePaths": "/var/lib/heed", "Restart": "on-failure",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"ExecStart": "/usr/local/bin/heed serve -config /etc/heed/heed.yaml",
	} {
		if set[k] != want {
			t.Errorf("%s=%q, want %q", k, set[k], want)
		}
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, where the
// machine has it, and fails on any complaint: verify exits 0 on a
// setting it ignores, so its output is what counts. The binary's path is
// swapped for one that exists here, since verify checks it.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	b, err := os.ReadFile("heed.service")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable() // this test binary: it exists and runs
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "heed.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/heed", exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
