package dkim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// debianPython is Debian's interpreter, which has python3-dkim (dkimpy)
// and python3-nacl (for Ed25519); a python3 found on PATH may be another
// build without them.
const debianPython = "/usr/bin/python3"

// dkimpyResult is one line of testdata/dkimpy_verify.py's report.
type dkimpyResult struct {
	A, D, S string
	OK      bool
	Error   string
}

// requireDkimpy skips the test when dkimpy cannot run here, except in CI,
// which installs it (apt-get install python3-dkim) and where a skip would
// hide that the independent check stopped running.
func requireDkimpy(t *testing.T) {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", "import dkim, nacl.signing").CombinedOutput()
	if err == nil {
		return
	}
	msg := "dkimpy not available (" + debianPython + " with python3-dkim and python3-nacl; apt-get install python3-dkim): " +
		err.Error() + " " + string(bytes.TrimSpace(out))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// dkimpyVerify runs dkimpy once over msgs with zone as DNS and returns its
// report on each message.
func dkimpyVerify(t *testing.T, zone fakeDNS, msgs ...[]byte) [][]dkimpyResult {
	t.Helper()
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "zone.json")
	// dkimpy reads one string per record; it gets the character-strings
	// joined, as a resolver would hand them over.
	joined := map[string]string{}
	for name := range zone {
		v, _ := zone.lookupTXT(name)
		joined[name] = v[0]
	}
	zj, err := json.Marshal(joined)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(zoneFile, zj, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join("testdata", "dkimpy_verify.py"), zoneFile}
	for i, m := range msgs {
		f := filepath.Join(dir, fmt.Sprintf("%d.eml", i))
		if err := os.WriteFile(f, m, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	cmd := exec.Command(debianPython, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy_verify.py: %v\n%s", err, stderr.Bytes())
	}
	var rs [][]dkimpyResult
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("dkimpy_verify.py output %q: %v", out, err)
	}
	if len(rs) != len(msgs) {
		t.Fatalf("dkimpy reported on %d messages of %d", len(rs), len(msgs))
	}
	return rs
}

// TestDkimpyVerifies has an implementation written independently of
// go-msgauth check Heed's signatures, each signature on its own, so that a
// bug shared by go-msgauth's signer and verifier (both use its own
// canonicalisation) cannot pass unnoticed; and shows that dkimpy rejects
// tampered copies and wrong keys, so that a verifier set up to pass
// everything cannot make this test pass.
func TestDkimpyVerifies(t *testing.T) {
	requireDkimpy(t)
	keys := signingKeys(t)
	zone := publish(t, keys)
	type check struct {
		what string
		msg  []byte
		ok   bool
	}
	var checks []check
	for _, name := range []string{"plain", "multipart", "folded", "whitespace"} {
		out := signed(t, testMessages[name], keys)
		checks = append(checks,
			check{name + " as signed", out, true},
			check{name + " white space re-folded", mangleWhitespace(t, out), true},
			check{name + " Subject added", insertField(out, "Subject: Your account is locked", true), false},
			check{name + " From added", insertField(out, "From: security@bank.example", false), false},
			check{name + " List-Unsubscribe-Post added", insertField(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click", false), false},
			check{name + " body changed", bytes.Replace(out, []byte("\r\n\r\n"), []byte("\r\n\r\nInjected line.\r\n"), 1), false},
		)
	}
	msgs := make([][]byte, len(checks))
	for i, c := range checks {
		msgs[i] = c.msg
	}
	wantA := []string{string(RSA), string(Ed25519)}
	for i, rs := range dkimpyVerify(t, zone, msgs...) {
		c := checks[i]
		if len(rs) != 2 {
			t.Errorf("%s: dkimpy saw %d signatures, want 2: %+v", c.what, len(rs), rs)
			continue
		}
		for j, r := range rs {
			if r.A != wantA[j] || r.D != "example.com" || r.S != keys[1-j].Selector {
				t.Errorf("%s: signature %d is a=%s d=%s s=%s, want a=%s d=example.com s=%s",
					c.what, j, r.A, r.D, r.S, wantA[j], keys[1-j].Selector)
			}
			if r.OK != c.ok {
				t.Errorf("%s: dkimpy says %s signature ok=%v (%s), want %v", c.what, r.A, r.OK, r.Error, c.ok)
			}
		}
	}

	// Each selector serving a key of the right algorithm, but not the one
	// that signed.
	other := fakeDNS{}
	r2, _ := TXTRecord(readPEM(t, "rsa1024-pkcs8.pem").Public())
	e2, _ := Generate(Ed25519)
	e2v, _ := TXTRecord(e2.Public())
	other[keys[1].Selector+"._domainkey.example.com"] = r2
	other[keys[0].Selector+"._domainkey.example.com"] = e2v
	rs := dkimpyVerify(t, other, checks[0].msg)[0]
	if len(rs) != 2 {
		t.Fatalf("dkimpy saw %d signatures", len(rs))
	}
	for _, r := range rs {
		if r.OK {
			t.Errorf("dkimpy accepts the %s signature with another key", r.A)
		}
	}
}
