package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// TestDemoOperator: in demo mode the relay makes a console operator and
// prints its username, password and TOTP secret, which sign in; a
// restart prints the same ones.
func TestDemoOperator(t *testing.T) {
	cfg := testConfig(t)
	cfg.Demo = true
	r, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	var out bytes.Buffer
	if err := r.demoOperator(&out); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`username +demo\n +password +(\S+)\n +TOTP secret +(\S+)`).FindStringSubmatch(out.String())
	if m == nil || !strings.Contains(out.String(), "http://"+r.AdminAddr()+"/console/") {
		t.Fatalf("printed:\n%s", out.String())
	}
	ctx := context.Background()
	if _, _, err := r.consoleUsers.SignIn(ctx, "demo", m[1]); err != nil {
		t.Errorf("the printed password: %v", err)
	}
	u, ok, err := r.consoleUsers.User(ctx, "demo")
	if err != nil || !ok || !u.Operator {
		t.Errorf("demo user %+v %v %v", u, ok, err)
	}
	var again bytes.Buffer
	if err := r.demoOperator(&again); err != nil || again.String() != out.String() {
		t.Errorf("the second print differs (%v):\n%s", err, again.String())
	}
}
