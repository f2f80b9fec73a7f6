package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/fsutil"
	"github.com/heedmail/heed/internal/server"
	"github.com/heedmail/heed/suppression"
)

// target is where an operator command works: a serving relay's admin API
// (-api URL, with the token from -token or HEED_ADMIN_TOKEN), or the data
// directory of a stopped one (-config FILE; the embedded defaults' without).
type target struct {
	api, token, config string
}

func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.api, "api", "", "admin API of a serving relay, e.g. http://127.0.0.1:8081")
	fs.StringVar(&t.token, "token", "", "operator token (default $HEED_ADMIN_TOKEN)")
	fs.StringVar(&t.config, "config", "", "configuration file of a stopped relay (its data_dir is used)")
}

func (t *target) check() error {
	if t.api != "" && t.config != "" {
		return errors.New("give -api or -config, not both")
	}
	if t.api != "" {
		if t.token == "" {
			t.token = os.Getenv("HEED_ADMIN_TOKEN")
		}
		if t.token == "" {
			return errors.New("-api needs an operator token: -token or HEED_ADMIN_TOKEN")
		}
		t.api = strings.TrimSuffix(t.api, "/")
	}
	return nil
}

// request calls the admin API and fails on an error status with its
// problem detail.
func (t *target) request(method, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, t.api+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var p struct{ Title, Detail string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &p) == nil && p.Title != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, p.Title, p.Detail)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// openData opens the stopped relay's data directory.
func (t *target) openData() (*server.Data, error) {
	cfg, err := loadConfig(t.config)
	if err != nil {
		return nil, err
	}
	d, err := server.OpenData(cfg)
	if errors.Is(err, server.ErrLocked) {
		return nil, fmt.Errorf("%w; while it serves, use -api", err)
	}
	return d, err
}

// writeFileAtomic writes r to path through a temporary file beside it,
// fsynced and renamed: a cut-short copy never takes path's name.
func writeFileAtomic(path string, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

// backupCmd: heed backup [-api URL | -config FILE] OUT
func backupCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t target
	t.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("backup: name the file to write: heed backup [-api URL | -config FILE] OUT")
	}
	if err := t.check(); err != nil {
		return err
	}
	if t.api == "" {
		cfg, err := loadConfig(t.config)
		if err != nil {
			return err
		}
		if cfg.Storage.Driver == config.DriverPostgres {
			return errBackupPostgres
		}
	}
	out := fs.Arg(0)
	var n int64
	err := writeFileAtomic(out, func(w io.Writer) error {
		if t.api != "" {
			resp, err := t.request("GET", "/api/v1/backup", "", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if n, err = io.Copy(w, resp.Body); err != nil {
				return err
			}
			if resp.ContentLength >= 0 && n != resp.ContentLength {
				return fmt.Errorf("backup cut short: %d of %d bytes", n, resp.ContentLength)
			}
			return nil
		}
		d, err := t.openData()
		if err != nil {
			return err
		}
		defer d.Close()
		n, err = d.DB.Backup(w, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes): a consistent copy of heed.db; restore it as data_dir/heed.db with the same data_dir/keys\n", out, n)
	return nil
}

// dkimCmd: heed dkim keygen [-algorithm rsa|ed25519] [-domain D] [-selector S] [-out FILE]
func dkimCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "keygen" {
		return errors.New("dkim: the subcommand is keygen: heed dkim keygen [-algorithm rsa|ed25519] [-domain D] [-selector S] [-out FILE]")
	}
	fs := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	algo := fs.String("algorithm", "rsa", "rsa (RSA-2048) or ed25519")
	domain := fs.String("domain", "example.com", "the signing domain, for the DNS record's name")
	selector := fs.String("selector", "", "the selector (default: a new heed-... one)")
	out := fs.String("out", "", "write the private key (PKCS#8 PEM) to this file, mode 0600 (default: stdout)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	alg, ok := dkim.ParseAlgorithm(*algo)
	if !ok {
		return fmt.Errorf("dkim keygen: -algorithm must be rsa or ed25519, not %q", *algo)
	}
	k, err := dkim.Generate(alg)
	if err != nil {
		return err
	}
	der, err := dkim.MarshalPrivate(k)
	if err != nil {
		return err
	}
	txt, err := dkim.TXTRecord(k.Public())
	if err != nil {
		return err
	}
	sel := *selector
	if sel == "" {
		sel = dkim.NewSelector(alg, time.Now())
	}
	var pemOut bytes.Buffer
	if err := pem.Encode(&pemOut, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, pemOut.Bytes(), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "private key written to %s\n", *out)
	} else {
		stdout.Write(pemOut.Bytes())
	}
	var quoted []string
	for _, s := range dkim.SplitTXT(txt) {
		quoted = append(quoted, `"`+s+`"`)
	}
	fmt.Fprintf(stdout, "%s._domainkey.%s. IN TXT ( %s )\n", sel, *domain, strings.Join(quoted, " "))
	return nil
}

// suppressCmd: heed suppress import|export ...
func suppressCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "import" && args[0] != "export") {
		return errors.New("suppress: heed suppress import -tenant T [-dry-run] FILE | heed suppress export -tenant T [-list L] [-reason R] [-since TIME] [-out FILE]")
	}
	fs := flag.NewFlagSet("suppress "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t target
	t.flags(fs)
	tenantID := fs.String("tenant", "", "the tenant (required)")
	dry := fs.Bool("dry-run", false, "import: validate and report, write nothing")
	list := fs.String("list", "", "export: only this scope (a list id or *)")
	reason := fs.String("reason", "", "export: only this reason")
	since := fs.String("since", "", "export: only entries created at or after this RFC 3339 time")
	out := fs.String("out", "", "export: write to this file (default stdout)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *tenantID == "" {
		return errors.New("suppress: -tenant is required")
	}
	if err := t.check(); err != nil {
		return err
	}
	if args[0] == "import" {
		if fs.NArg() != 1 {
			return errors.New("suppress import: name the CSV file")
		}
		return suppressImport(&t, *tenantID, fs.Arg(0), *dry, stdout, stderr)
	}
	q := url.Values{}
	for k, v := range map[string]string{"list": *list, "reason": *reason, "since": *since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	export := func(w io.Writer) error { return suppressExport(&t, *tenantID, q, w) }
	if *out == "" {
		return export(stdout)
	}
	// To a file, the rows written so far are shown on stderr.
	return writeFileAtomic(*out, func(w io.Writer) error {
		c := &rowCounter{w: w, show: stderr, what: "exporting " + filepath.Base(*out)}
		err := export(c)
		c.done()
		return err
	})
}

// rowCounter counts the lines written through it and shows the count on
// show, at most a few times a second.
type rowCounter struct {
	w, show io.Writer
	what    string
	lines   int
	last    time.Time
	shown   bool
}

func (c *rowCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	if time.Since(c.last) > 200*time.Millisecond && c.lines > 10000 {
		c.last = time.Now()
		fmt.Fprintf(c.show, "\r%s: %d rows", c.what, max(c.lines-1, 0))
		c.shown = true
	}
	return c.w.Write(p)
}

func (c *rowCounter) done() {
	if c.shown {
		fmt.Fprintf(c.show, "\r%s: %d rows, done\n", c.what, max(c.lines-1, 0))
	}
}

func suppressImport(t *target, tenantID, file string, dry bool, stdout, stderr io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	body := &progress{r: f, total: st.Size(), w: stderr, what: "importing " + filepath.Base(file)}
	defer body.done()
	var rep json.RawMessage
	if t.api != "" {
		path := "/api/v1/tenants/" + url.PathEscape(tenantID) + "/suppressions/import"
		if dry {
			path += "?dry_run=true"
		}
		resp, err := t.request("POST", path, "text/csv", body)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if rep, err = io.ReadAll(resp.Body); err != nil {
			return err
		}
	} else {
		d, err := t.openData()
		if err != nil {
			return err
		}
		defer d.Close()
		ctx := context.Background()
		if _, err := d.Tenants.Tenant(ctx, tenantID); err != nil {
			return fmt.Errorf("tenant %q: %w", tenantID, err)
		}
		lists, err := d.Tenants.Lists(ctx, tenantID)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		for _, l := range lists {
			known[l.ID] = true
		}
		r, err := suppression.ImportCSV(ctx, d.Suppressions, tenantID, body, suppression.ImportOptions{DryRun: dry, CheckList: func(id string) error {
			if !known[id] {
				return fmt.Errorf("tenant %q has no list %q", tenantID, id)
			}
			return nil
		}})
		if err != nil {
			return err
		}
		if rep, err = json.Marshal(r); err != nil {
			return err
		}
	}
	body.done()
	var pretty bytes.Buffer
	json.Indent(&pretty, rep, "", "  ")
	pretty.WriteByte('\n')
	_, err = stdout.Write(pretty.Bytes())
	return err
}

func suppressExport(t *target, tenantID string, q url.Values, w io.Writer) error {
	if t.api != "" {
		path := "/api/v1/tenants/" + url.PathEscape(tenantID) + "/suppressions/export"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		resp, err := t.request("GET", path, "", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(w, resp.Body)
		return err
	}
	d, err := t.openData()
	if err != nil {
		return err
	}
	defer d.Close()
	var o suppression.ExportOptions
	o.List = q.Get("list")
	if v := q.Get("reason"); v != "" {
		r, err := suppression.ParseReason(v)
		if err != nil {
			return err
		}
		o.Reason = r
	}
	if v := q.Get("since"); v != "" {
		s, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("-since: %w", err)
		}
		o.Since = s
	}
	_, err = suppression.ExportCSV(context.Background(), d.Suppressions, tenantID, w, o)
	return err
}

// progress counts what is read and shows it on w (a terminal's stderr) as
// a percentage, at most a few times a second, for files over 1 MiB.
type progress struct {
	r          io.Reader
	total, n   int64
	w          io.Writer
	what       string
	last       time.Time
	shown, end bool
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.total > 1<<20 && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r%s: %3d%% (%d of %d MiB)", p.what, p.n*100/p.total, p.n>>20, p.total>>20)
		p.shown = true
	}
	return n, err
}

func (p *progress) done() {
	if p.shown && !p.end {
		fmt.Fprintf(p.w, "\r%s: 100%% (%d MiB), done\n", p.what, p.total>>20)
	}
	p.end = true
}

// checkDatabase is check-config's connection check on PostgreSQL: a
// configuration whose DSN does not reach the database, or whose database
// a newer Heed migrated, is not a working one.
func checkDatabase(stdout io.Writer, cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	found, known, ok, err := server.CheckDatabase(ctx, cfg)
	if !ok {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage.postgres: %w", err)
	}
	switch {
	case found > known:
		return fmt.Errorf("storage.postgres: the database's schema is at version %d, newer than this Heed's %d: run the Heed that migrated it, or a later one", found, known)
	case found < known:
		fmt.Fprintf(stdout, "PostgreSQL: connected; schema at version %d, this Heed's is %d: heed serve (or heed migrate) will apply %d migration(s)\n", found, known, known-found)
	default:
		fmt.Fprintf(stdout, "PostgreSQL: connected; schema at version %d, up to date\n", found)
	}
	return nil
}

// migrateCmd: heed migrate -config FILE
func migrateCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	// Several nodes may run it at once: they wait for each other on the
	// migration lock, and the later ones find nothing to do.
	log := slog.New(slog.NewTextHandler(stderr, nil))
	before, after, ok, err := server.Migrate(context.Background(), cfg, log)
	if !ok {
		fmt.Fprintln(stdout, "storage.driver is bbolt: nothing to migrate (heed serve upgrades its database when it opens it)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if before == after {
		fmt.Fprintf(stdout, "PostgreSQL schema at version %d: nothing to do\n", after)
	} else {
		fmt.Fprintf(stdout, "PostgreSQL schema migrated from version %d to %d\n", before, after)
	}
	return nil
}

// errBackupPostgres is heed backup's answer on PostgreSQL, where a copy
// made by Heed would be neither consistent with the WAL nor restorable
// with PostgreSQL's tools.
var errBackupPostgres = errors.New("backup: storage.driver is postgres: Heed's state is in PostgreSQL, so back it up with PostgreSQL's tools: pg_dump (a consistent logical copy while Heed serves) or base backups with WAL archiving (pg_basebackup, point-in-time recovery); docs/postgresql.md says how. Nothing was written")
