package console_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/tenant"
)

// upload posts a multipart import form with fields in the given order
// (name, value; a field "file" is sent as a file).
func (e *env) upload(c *http.Client, path string, fields ...string) (int, string) {
	e.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := 0; i+1 < len(fields); i += 2 {
		var w io.Writer
		var err error
		if fields[i] == "file" {
			w, err = mw.CreateFormFile("file", "list.csv")
		} else {
			w, err = mw.CreateFormField(fields[i])
		}
		if err != nil {
			e.t.Fatal(err)
		}
		io.WriteString(w, fields[i+1])
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", e.srv.URL)
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestImportNeedsTokenAndWrite: an upload without the session's token
// first, or with it after the file, or from a read-only user, imports
// nothing; a dry run reports and imports nothing either.
func TestImportNeedsTokenAndWrite(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	const path = "/console/tenants/acme/suppressions/import"
	const csv = "address\nana@example.net\n"
	ops := e.signedIn("ops")
	_, _, tok := e.get(ops, path)
	for name, fields := range map[string][]string{
		"no token":          {"file", csv},
		"a wrong token":     {"csrf", "x" + tok, "file", csv},
		"the token at last": {"file", csv, "csrf", tok},
	} {
		if st, _ := e.upload(ops, path, fields...); st != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, st)
		}
	}
	st, body := e.upload(ops, path, "csrf", tok, "dry_run", "yes", "file", csv)
	if st != http.StatusOK || !strings.Contains(body, "nothing was imported") {
		t.Errorf("dry run: %d\n%s", st, body)
	}
	if es, _ := e.sup.Lookup(context.Background(), "acme", "ana@example.net"); len(es) != 0 {
		t.Fatalf("imported without a valid token or in a dry run: %v", es)
	}

	pat := e.signedIn("pat")
	_, page, ptok := e.get(pat, "/console/tenants/acme/suppressions")
	if strings.Contains(page, "suppressions/import") || !strings.Contains(page, "suppressions/export") {
		t.Errorf("a read-only user's page should offer the export only:\n%s", page)
	}
	if st, _ := e.upload(pat, path, "csrf", ptok, "file", csv); st != http.StatusForbidden {
		t.Errorf("a read-only user's import: %d, want 403", st)
	}
	if es, _ := e.sup.Lookup(context.Background(), "acme", "ana@example.net"); len(es) != 0 {
		t.Fatalf("a read-only user imported: %v", es)
	}
	if recs, _ := e.audit.Records(context.Background(), "", 0, 10); len(recs) != 0 {
		t.Errorf("audit records of refused imports and a dry run: %+v", recs)
	}
}

// TestExportCSV: the export downloads the tenant's list as the API's
// CSV; another tenant's export is that tenant's 404 to a tenant user.
func TestExportCSV(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "pat", Tenant: "acme", Access: tenant.ReadOnly})
	e.bounce("acme", "pat@example.net", "msg-0001")
	e.bounce("globex", "lee@example.net", "msg-0002")
	c := e.signedIn("pat")
	resp, err := c.Get(e.srv.URL + "/console/tenants/acme/suppressions/export")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), `filename="acme-suppressions.csv"`) {
		t.Errorf("export: %d %v", resp.StatusCode, resp.Header)
	}
	if !strings.HasPrefix(string(b), "address,list,reason,channel,created_at,message_id\n") ||
		!strings.Contains(string(b), "pat@example.net,*,bounce,dsn,") || strings.Contains(string(b), "lee@") {
		t.Errorf("export body:\n%s", b)
	}
	if st, body, _ := e.get(c, "/console/tenants/globex/suppressions/export"); st != http.StatusNotFound || strings.Contains(body, "lee@") {
		t.Errorf("another tenant's export: %d\n%s", st, body)
	}
}

// TestBrowserImportProgress: over a slow uplink, the import page shows
// a progress bar that moves while the file is sent and read, then the
// report replaces it, as without JavaScript; the page passes axe while
// the bar is shown.
func TestBrowserImportProgress(t *testing.T) {
	e := newEnv(t, nil)
	e.user(consoleusers.NewUser{Username: "ops", Operator: true})
	var csv strings.Builder
	csv.WriteString("address,list,reason\n")
	const rows = 30000
	for i := range rows {
		fmt.Fprintf(&csv, "someone.with.a.long.name%d@example.net,*,import\n", i)
	}
	path := filepath.Join(t.TempDir(), "opt-outs.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, true)
	b.signIn(e, "ops")
	// About 1.6 MB at 400 kB/s: four seconds of upload to watch.
	b.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: []*network.Conditions{{UploadThroughput: 400_000, DownloadThroughput: -1}}})
		return err
	}))
	b.run(chromedp.Navigate(e.srv.URL+"/console/tenants/acme/suppressions/import"),
		chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{path}),
		chromedp.Click(chromedp.CSS("form.card button")),
		chromedp.WaitVisible(chromedp.CSS("#import-progress")),
		chromedp.Poll[chromedp.Void](`(() => { const p = document.getElementById("import-progress"); return p && p.value > 0 && p.value < 100; })()`))
	b.accessible("import in progress")
	b.shot("import-progress")
	b.run(chromedp.WaitVisible(chromedp.CSS("section[aria-labelledby=report]")))
	if figures := b.text("dl.report"); !strings.Contains(figures, fmt.Sprintf("Rows read\n%d", rows)) || !strings.Contains(figures, fmt.Sprintf("Added\n%d", rows)) {
		t.Errorf("the report after the progress bar:\n%s", figures)
	}
	if title, _ := b.page(); !strings.HasPrefix(title, "Import report") {
		t.Errorf("the page's title after the import: %q", title)
	}
}
