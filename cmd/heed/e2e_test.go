package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/heedproc"
	"github.com/heedmail/heed/internal/testsink"
)

func freePort(t *testing.T) string { return heedproc.FreePort(t, "127.0.0.1") }

func startHeed(t *testing.T, dir string, args ...string) *heedproc.Proc {
	t.Helper()
	return startHeedEnv(t, dir, nil, args...)
}

// startHeedEnv is startHeed with env added to the process's environment.
func startHeedEnv(t *testing.T, dir string, env []string, args ...string) *heedproc.Proc {
	t.Helper()
	return heedproc.Start(t, "heed", dir, env, nil, args...)
}

func waitHealthy(t *testing.T, p *heedproc.Proc, admin string) {
	heedproc.WaitFor(t, "heed to answer /healthz", 30*time.Second, func() bool {
		select {
		case <-p.Exited:
			t.Fatalf("heed exited: %s", p.Out.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func api(t *testing.T, admin, token, method, path string, body any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "http://"+admin+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, raw)
	}
	var out map[string]any
	json.Unmarshal(raw, &out)
	return out
}

// writeConfig writes dir/heed.yaml for a relay on loopback with its data in
// dir/data, submission and admin on the given addresses, the operator
// token, and extra YAML lines (delivery, webhooks, ...) after them; it
// returns the file's path.
func writeConfig(t *testing.T, dir, smtpAddr, adminAddr, token, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "heed.yaml")
	cfg := fmt.Sprintf(`hostname: relay.test
data_dir: %s
smtp: { submission: { listen: "%s" }, inbound: { listen: "127.0.0.1:0" } }
http: { admin: { listen: "%s" }, public: { listen: "127.0.0.1:0" } }
admin: { tokens: ["%s"] }
log: { level: warn }
`, filepath.Join(dir, "data"), smtpAddr, adminAddr, token) + extra
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCrashLosesNothing: several connections send; heed is killed with
// SIGKILL mid-load and restarted; every message that got a 250 reaches the
// next hop. Duplicates (an attempt in flight at the kill) are counted and
// reported; a loss fails the test. It runs on bbolt (bodies in the
// database and in spool files) and on PostgreSQL (every body in the
// database).
func TestCrashLosesNothing(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { crashLosesNothing(t, "") })
	t.Run("postgres", func(t *testing.T) { crashLosesNothing(t, postgresConfig(t)) })
}

// postgresConfig is the storage section of a config on a new database of
// the test binary's PostgreSQL cluster.
func postgresConfig(t *testing.T) string {
	return fmt.Sprintf("storage: { driver: postgres, postgres: { dsn: %q } }\n", pgtest.DSN(t))
}

func crashLosesNothing(t *testing.T, storage string) {
	// The sink holds every even-numbered message at RCPT until heed has
	// been killed, so the kill finds a backlog in the spool as well as
	// attempts in flight.
	release := make(chan struct{})
	sink := testsink.Start(t, testsink.Options{Reply: func(stage, _, rcpt string, _ int) *smtp.SMTPError {
		if stage == "RCPT" && evenMessage.MatchString(rcpt) {
			<-release
		}
		return nil
	}})
	dir := t.TempDir()
	smtpAddr, adminAddr := freePort(t), freePort(t)
	const token = "crash-test-operator-token-0123456789"
	cfgPath := writeConfig(t, dir, smtpAddr, adminAddr, token,
		fmt.Sprintf("delivery: { mode: mx, routes: { \"example.net\": %q } }\n", sink.Addr())+storage)

	p := startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p, adminAddr)
	api(t, adminAddr, token, "POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme"})
	api(t, adminAddr, token, "POST", "/api/v1/tenants/acme/domains", map[string]string{"domain": "acme.test"})
	cred := api(t, adminAddr, token, "POST", "/api/v1/tenants/acme/credentials", map[string]string{})
	user, pass := cred["username"].(string), cred["password"].(string)

	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		count    atomic.Int64
		wg       sync.WaitGroup
		killOnce sync.Once
	)
	const conns, killAfter = 8, 200
	for g := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(smtpAddr)
			if err != nil {
				return
			}
			defer c.Close()
			if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
				return
			}
			for i := 0; ; i++ {
				id := fmt.Sprintf("m-%d-%d", g, i)
				// Every third body is over the 64 KiB inline limit, so both
				// the database and the spool-file paths are crashed.
				lines := 50
				if i%3 == 0 {
					lines = 3500
				}
				msg := "From: hello@acme.test\r\nSubject: " + id + "\r\nMessage-ID: <" + id + "@acme.test>\r\n\r\n" + strings.Repeat("crash test body line\r\n", lines)
				if err := c.SendMail("hello@acme.test", []string{id + "@example.net"}, strings.NewReader(msg)); err != nil {
					return // the process is gone
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				if count.Add(1) >= killAfter {
					killOnce.Do(func() { p.Cmd.Process.Kill() })
				}
			}
		}()
	}
	wg.Wait()
	<-p.Exited
	close(release)
	t.Logf("killed after %d acknowledged messages; %d had reached the sink", len(acked), len(sink.Messages()))

	p2 := startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p2, adminAddr)
	seen := func() map[string]int {
		got := map[string]int{}
		for _, m := range sink.Messages() {
			got[strings.TrimSuffix(m.To[0], "@example.net")]++
		}
		return got
	}
	heedproc.WaitFor(t, "every acknowledged message at the sink", 60*time.Second, func() bool {
		got := seen()
		for id := range acked {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	dups := 0
	for _, n := range seen() {
		dups += n - 1
	}
	t.Logf("all %d acknowledged messages delivered; %d duplicates (attempts in flight at the kill)", len(acked), dups)
}

var evenMessage = regexp.MustCompile(`^m-\d+-\d*[02468]@`)

// TestDemoMode: `heed serve` with no config, as `make run` starts it,
// prints working credentials; mail sent with them is captured and listed.
func TestDemoMode(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:2525", "127.0.0.1:2526", "127.0.0.1:8080", "127.0.0.1:8081"} {
		if l, err := net.Listen("tcp", addr); err != nil {
			t.Skipf("%s is in use: %v", addr, err)
		} else {
			l.Close()
		}
	}
	dir := t.TempDir()
	p := startHeed(t, dir, "serve")
	waitHealthy(t, p, "127.0.0.1:8081")
	var user, pass, token string
	heedproc.WaitFor(t, "the demo banner", 10*time.Second, func() bool {
		out := p.Out.String()
		u := regexp.MustCompile(`username\s+(\S+)`).FindStringSubmatch(out)
		pw := regexp.MustCompile(`password\s+(\S+)`).FindStringSubmatch(out)
		tk := regexp.MustCompile(`Bearer (\S+)`).FindStringSubmatch(out)
		if u == nil || pw == nil || tk == nil {
			return false
		}
		user, pass, token = u[1], pw[1], tk[1]
		return true
	})
	c, err := smtp.Dial("127.0.0.1:2525")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		t.Fatalf("demo credentials refused: %v", err)
	}
	msg := "From: hello@demo.example\r\nSubject: demo\r\n\r\nhello\r\n"
	if err := c.SendMail("hello@demo.example", []string{"someone@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	var listed []any
	heedproc.WaitFor(t, "the captured message to be listed", 10*time.Second, func() bool {
		listed, _ = api(t, "127.0.0.1:8081", token, "GET", "/api/v1/captured", nil)["captured"].([]any)
		return len(listed) == 1
	})
	if _, err := os.Stat(filepath.Join(dir, "heed-data", "heed.db")); err != nil {
		t.Errorf("no database in ./heed-data: %v", err)
	}
}

// TestSIGTERM: heed stops accepting, finishes, closes the database and
// exits 0; the data directory opens again.
func TestSIGTERM(t *testing.T) {
	dir := t.TempDir()
	smtpAddr, adminAddr := freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "heed.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("hostname: relay.test\ndata_dir: %s\nsmtp: { submission: { listen: %q }, inbound: { listen: \"127.0.0.1:0\" } }\nhttp: { admin: { listen: %q }, public: { listen: \"127.0.0.1:0\" } }\nadmin: { tokens: [\"sigterm-test-token-0123456789\"] }\n",
		filepath.Join(dir, "data"), smtpAddr, adminAddr)), 0o600)
	for round := range 2 {
		p := startHeed(t, dir, "serve", "-config", cfgPath)
		waitHealthy(t, p, adminAddr)
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Exited:
		case <-time.After(30 * time.Second):
			t.Fatal("heed did not exit after SIGTERM")
		}
		if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("round %d: exit code %d after SIGTERM:\n%s", round, code, p.Out.String())
		}
		if !strings.Contains(p.Out.String(), "shutting down") {
			t.Errorf("no shutdown in the log:\n%s", p.Out.String())
		}
		// The operator can tell from the log which code signs.
		if !strings.Contains(p.Out.String(), "rsa_signer=\""+dkim.RSASigner()) {
			t.Errorf("the start line does not name the RSA signer %q:\n%s", dkim.RSASigner(), p.Out.String())
		}
	}
}

func TestCheckConfigReportsLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte("hostname: relay.example.com\nsmtp:\n  max_recipents: 5\ndelivery:\n  mode: carrier-pigeon\n"), 0o600)
	out, err := exec.Command(heedproc.Binary(t), "check-config", "-config", path).CombinedOutput()
	if err == nil {
		t.Fatalf("check-config accepted a bad file:\n%s", out)
	}
	for _, want := range []string{"bad.yaml:3", "max_recipents", "bad.yaml:5", "carrier-pigeon"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
