package server

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

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
