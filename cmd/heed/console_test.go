package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/heedproc"
	"github.com/pquerna/otp/totp"
)

// TestConsoleAddUser: on a stopped relay, heed console add-user makes an
// operator and prints its password and TOTP secret once; the relay,
// started again, signs that user in to the console with them; a user of
// a tenant that does not exist is refused.
func TestConsoleAddUser(t *testing.T) {
	dir := t.TempDir()
	smtpAddr, adminAddr := freePort(t), freePort(t)
	const token = "console-test-operator-token-0123456789"
	cfgPath := writeConfig(t, dir, smtpAddr, adminAddr, token, "delivery: { mode: capture }\n")
	p := startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p, adminAddr)
	p.Cmd.Process.Signal(os.Interrupt)
	<-p.Exited

	out := heedCmd(t, dir, nil, "console", "add-user", "-config", cfgPath, "-username", "ana", "-operator")
	pass := regexp.MustCompile(`password +(\S+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`TOTP secret +(\S+)`).FindStringSubmatch(out)
	if pass == nil || secret == nil || !strings.Contains(out, "otpauth://totp/Heed:ana?") {
		t.Fatalf("add-user printed:\n%s", out)
	}
	cmd := exec.Command(heedproc.Binary(t), "console", "add-user", "-config", cfgPath, "-username", "pat", "-tenant", "nosuch", "-access", "read")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), `tenant "nosuch"`) {
		t.Errorf("a user of a missing tenant: %v\n%s", err, b)
	}

	p = startHeed(t, dir, "serve", "-config", cfgPath)
	waitHealthy(t, p, adminAddr)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	base := "http://" + adminAddr + "/console/"
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	form := func(path string, v url.Values) string {
		t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrf.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no form at %s: %d\n%s", path, resp.StatusCode, b)
		}
		v.Set("csrf", string(m[1]))
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://"+adminAddr)
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ = io.ReadAll(resp.Body)
		return string(b)
	}
	form("sign-in", url.Values{"username": {"ana"}, "password": {pass[1]}})
	code, _ := totp.GenerateCode(secret[1], time.Now())
	if page := form("sign-in/code", url.Values{"code": {code}}); !strings.Contains(page, "<h1>Overview</h1>") || !strings.Contains(page, "ana (operator)") {
		t.Fatalf("after signing in:\n%s", page)
	}
}
