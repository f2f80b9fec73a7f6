package server

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	bolt "go.etcd.io/bbolt"
)

// testConfig is a relay on loopback ports the system picks, with its data
// under t.TempDir().
func testConfig(t *testing.T) *config.Config {
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Hostname = "relay.test"
	cfg.ReturnPathDomain, cfg.Unsubscribe.MailtoDomain = "bounces.relay.test", "unsubscribe.relay.test"
	cfg.HTTP.Public.BaseURL = "https://unsubscribe.relay.test"
	cfg.SMTP.Submission.Listen, cfg.HTTP.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.HTTP.Public.Listen, cfg.SMTP.Inbound.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.Tokens = []string{"server-test-token-0123456789"}
	return cfg
}

// TestReadyz: ready once started, not ready once shutdown has begun.
func TestReadyz(t *testing.T) {
	cfg := testConfig(t)
	r, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	get := func() int {
		resp, err := http.Get("http://" + r.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		t.Errorf("/readyz after start = %d, want 200", code)
	}
	// An open SMTP session keeps Shutdown draining; meanwhile the admin
	// listener still answers, and must say not ready.
	sess, err := net.Dial("tcp", r.SubmissionAddr())
	if err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(sess).ReadString('\n') // the greeting: the session is up
	done := make(chan struct{})
	go func() { r.Shutdown(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for get() != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 while shutting down")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	sess.Close()
	<-done
}

// TestReplacedKeyRefused: a data directory whose server key or a token
// key was lost or replaced does not start (what was keyed under the old
// key would silently stop working), and says what to restore; a retired
// token key may go.
func TestReplacedKeyRefused(t *testing.T) {
	cfg := testConfig(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() error {
		r, err := Start(cfg, log)
		if err == nil {
			r.Shutdown()
		}
		return err
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	if err := start(); err != nil {
		t.Fatalf("second start with the same keys: %v", err)
	}
	keys := filepath.Join(cfg.DataDir, "keys")
	for _, name := range []string{"server.key", filepath.Join("unsubscribe", "1.key")} {
		path := filepath.Join(keys, name)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path, bytes.Repeat([]byte{7}, len(orig)), 0o600)
		if err := start(); err == nil || !strings.Contains(err.Error(), "restore") {
			t.Errorf("%s replaced: start gave %v, want a refusal saying what to restore", name, err)
		}
		os.Remove(path)
		if err := start(); err == nil || !strings.Contains(err.Error(), "restore") {
			t.Errorf("%s removed: start gave %v, want a refusal", name, err)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s was made anew", name)
		}
		os.WriteFile(path, orig, 0o600)
		if err := start(); err != nil {
			t.Errorf("%s restored: %v", name, err)
		}
	}

	// Rotation: 2.key is added and made current; later 1.key is retired.
	os.WriteFile(filepath.Join(keys, "unsubscribe", "2.key"), bytes.Repeat([]byte{9}, 32), 0o600)
	if err := start(); err != nil {
		t.Fatalf("with a second token key: %v", err)
	}
	os.Remove(filepath.Join(keys, "unsubscribe", "1.key"))
	if err := start(); err != nil {
		t.Errorf("with the first token key retired: %v", err)
	}
}

// TestUpgradeWithoutServerKeyRefused: a database from before the keys were
// bound, holding tenants, does not accept a newly made server key.
func TestUpgradeWithoutServerKeyRefused(t *testing.T) {
	cfg := testConfig(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Tenants().CreateTenant(t.Context(), tenant.Tenant{ID: "acme", Name: "Acme"}); err != nil {
		t.Fatal(err)
	}
	r.Shutdown()
	// As an older version left it: no fingerprint recorded.
	db, err := store.Open(filepath.Join(cfg.DataDir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Bolt().Update(func(tx *bolt.Tx) error { return tx.Bucket(store.BucketMeta).Delete([]byte("secret:server key")) })
	db.Close()
	os.Remove(filepath.Join(cfg.DataDir, "keys", "server.key"))
	if r, err := Start(cfg, log); err == nil || !strings.Contains(err.Error(), "restore") {
		if err == nil {
			r.Shutdown()
		}
		t.Errorf("start gave %v, want a refusal", err)
	}
}

// TestShutdownTwice: a relay stopped twice, one after the other and then
// twice at once, stops once; no call panics (queue.Stop closed a closed
// channel) or returns before the relay has stopped.
func TestShutdownTwice(t *testing.T) {
	cfg := testConfig(t)
	r, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.Shutdown()
	r.Shutdown()
	r2, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("a start after two shutdowns: %v", err)
	}
	done := make(chan struct{})
	go func() { r2.Shutdown(); close(done) }()
	r2.Shutdown()
	<-done
	if _, err := net.Dial("tcp", r2.AdminAddr()); err == nil {
		t.Error("the admin listener still accepts after Shutdown returned")
	}
}
