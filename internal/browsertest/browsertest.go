// Package browsertest starts a real Chromium for tests that drive Heed's
// pages (the console's, the unsubscribe page) through chromedp.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium is Debian's browser, which .ci/run installs.
const Chromium = "/usr/bin/chromium"

// Need skips a test (fails it under CI) without what it needs.
func Need(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing", what)
	}
	t.Skipf("%s is missing", what)
}

// Start starts Chromium with a window of width×height and returns a
// context of its first tab whose actions time out after timeout. The
// browser stops when the test ends; without Chromium the test is skipped
// (failed under CI).
func Start(t testing.TB, width, height int, timeout time.Duration) context.Context {
	t.Helper()
	_, err := exec.LookPath(Chromium)
	Need(t, Chromium+" (apt-get install chromium)", err == nil)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first action starts the browser; it must not run under a
	// timeout (that would stop the browser), the later ones do.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(ctx, timeout)
	t.Cleanup(cancel)
	return ctx
}
