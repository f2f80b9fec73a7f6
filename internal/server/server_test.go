package server

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/heedmail/heed/internal/config"
)

// TestReadyz: ready once started, not ready once shutdown has begun.
func TestReadyz(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Hostname = "relay.test"
	cfg.ReturnPathDomain, cfg.Unsubscribe.MailtoDomain = "bounces.relay.test", "unsubscribe.relay.test"
	cfg.SMTP.Submission.Listen, cfg.HTTP.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Admin.Tokens = []string{"readyz-test-token-0123456789"}
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
	r.ready.Store(false) // the first thing Shutdown does
	if code := get(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while shutting down = %d, want 503", code)
	}
	r.Shutdown()
}
