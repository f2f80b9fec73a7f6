package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/dnstest"
	"github.com/heedmail/heed/internal/heedproc"
	"github.com/heedmail/heed/internal/readiness"
)

// TestReadinessCommand: against a serving relay whose DNS is a server on
// loopback and whose public listener is behind HTTPS with a test
// certificate, `heed readiness` prints a table saying the domain is ready
// and exits 0, prints the same report as JSON, finds the owner without
// -tenant, and exits 1 naming the check once a record is gone.
func TestReadinessCommand(t *testing.T) {
	dir := t.TempDir()
	smtpAddr, adminAddr, publicAddr := freePort(t), freePort(t), freePort(t)
	const token = "readiness-test-operator-token-0123"

	// Heed's public listener behind TLS; the relay trusts the test
	// certificate through SSL_CERT_FILE, as an operator's system would.
	target, _ := url.Parse("http://" + publicAddr)
	front := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(front.Close)
	certFile := filepath.Join(dir, "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})
	if err := os.WriteFile(certFile, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}

	dns := dnstest.Start(t,
		`acme.test. TXT "v=spf1 a:relay.test ~all"`,
		`_dmarc.acme.test. TXT "v=DMARC1; p=quarantine"`,
		`relay.test. A 192.0.2.10`,
		`bounces.relay.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
		`bounces.relay.test. MX 10 relay.test.`,
		`unsubscribe.relay.test. MX 10 relay.test.`,
		dnstest.PTR("192.0.2.10")+` PTR relay.test.`,
	)
	cfgPath := writeConfig(t, dir, smtpAddr, adminAddr, token, `delivery: { mode: capture, source_addresses: ["192.0.2.10"] }
readiness: { dns_server: "`+dns.Addr+`" }
`)
	cfg, _ := os.ReadFile(cfgPath)
	cfg = bytes.Replace(cfg, []byte(`public: { listen: "127.0.0.1:0" }`),
		[]byte(`public: { listen: "`+publicAddr+`", base_url: "`+front.URL+`" }`), 1)
	os.WriteFile(cfgPath, cfg, 0o600)
	p := startHeedEnv(t, dir, []string{"SSL_CERT_FILE=" + certFile}, "serve", "-config", cfgPath)
	waitHealthy(t, p, adminAddr)

	api(t, adminAddr, token, "POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme", "postal_address": "1 Main St"})
	d := api(t, adminAddr, token, "POST", "/api/v1/tenants/acme/domains", map[string]string{"domain": "acme.test"})
	for _, rec := range d["dns_records"].([]any) {
		r := rec.(map[string]any)
		if r["purpose"] != "dkim" {
			continue
		}
		var parts []string
		for _, s := range dkim.SplitTXT(r["value"].(string)) {
			parts = append(parts, strconv.Quote(s))
		}
		dns.Set(t, r["name"].(string)+". TXT "+strings.Join(parts, " "))
	}

	env := []string{"HEED_ADMIN_TOKEN=" + token}
	out := heedCmd(t, dir, env, "readiness", "-api", "http://"+adminAddr, "-tenant", "acme", "-domain", "acme.test")
	for _, want := range []string{
		"acme.test is ready for bulk mail to Gmail and Yahoo", "STATUS", "ok      dkim_rsa",
		"ok      spf_return_path", "ok      one_click", "ok      complaint_rate", "0 complaints in 0 delivered",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}

	t.Logf("heed readiness:\n%s", out)

	// JSON, with the owner found by the operator token.
	out = heedCmd(t, dir, env, "readiness", "-api", "http://"+adminAddr, "-domain", "acme.test", "-json")
	var r readiness.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if !r.Ready || r.Domain != "acme.test" || len(r.Checks) < 12 {
		t.Errorf("JSON report: %+v", r)
	}

	// A record gone: not ready, exit 1, the check named.
	dns.Remove("_dmarc.acme.test", "TXT")
	cmd := exec.Command(heedproc.Binary(t), "readiness", "-api", "http://"+adminAddr, "-tenant", "acme", "-domain", "acme.test")
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\n%s%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "fail    dmarc") || !strings.Contains(stdout.String(), "not ready") ||
		!strings.Contains(stderr.String(), "fix dmarc") {
		t.Errorf("output:\n%s\nstderr: %s", stdout.String(), stderr.String())
	}
}
