package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/heedmail/heed/internal/readiness"
)

// readinessCmd: heed readiness -domain D [-tenant T] -api URL [-json]
// prints a sending domain's readiness report, read from a serving relay's
// admin API. It exits 1 when the domain is not ready, so scripts can wait
// for it.
func readinessCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("readiness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t target
	fs.StringVar(&t.api, "api", "", "admin API of a serving relay, e.g. http://127.0.0.1:8081 (required)")
	fs.StringVar(&t.token, "token", "", "operator token or the tenant's API key (default $HEED_ADMIN_TOKEN)")
	domain := fs.String("domain", "", "the sending domain (required)")
	tenantID := fs.String("tenant", "", "the tenant that owns it (default: found with an operator token)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *domain == "" || t.api == "" {
		return errors.New("readiness: heed readiness -domain D [-tenant T] -api URL [-json]")
	}
	if err := t.check(); err != nil {
		return fmt.Errorf("readiness: %w", err)
	}
	if *tenantID == "" {
		owner, err := domainOwner(&t, *domain)
		if err != nil {
			return fmt.Errorf("readiness: %w", err)
		}
		*tenantID = owner
	}
	resp, err := t.request("GET", "/api/v1/tenants/"+url.PathEscape(*tenantID)+"/domains/"+url.PathEscape(*domain)+"/readiness", "", nil)
	if err != nil {
		return fmt.Errorf("readiness: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	var r readiness.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("readiness: the API's answer: %w", err)
	}
	if *asJSON {
		stdout.Write(raw)
		if !strings.HasSuffix(string(raw), "\n") {
			fmt.Fprintln(stdout)
		}
	} else {
		printReport(stdout, &r)
	}
	if !r.Ready {
		return fmt.Errorf("%s is not ready: fix %s", r.Domain, strings.Join(r.Failed(), ", "))
	}
	return nil
}

// domainOwner finds the tenant that has domain, going through the
// tenants (an operator token's view).
func domainOwner(t *target, domain string) (string, error) {
	var ts struct {
		Tenants []struct{ ID string } `json:"tenants"`
	}
	if err := t.getJSON("/api/v1/tenants", &ts); err != nil {
		return "", fmt.Errorf("%w (with a tenant's API key, give -tenant)", err)
	}
	for _, tn := range ts.Tenants {
		var ds struct {
			Domains []struct{ Domain string } `json:"domains"`
		}
		if err := t.getJSON("/api/v1/tenants/"+url.PathEscape(tn.ID)+"/domains", &ds); err != nil {
			return "", err
		}
		for _, d := range ds.Domains {
			if strings.EqualFold(d.Domain, strings.TrimSuffix(domain, ".")) {
				return tn.ID, nil
			}
		}
	}
	return "", fmt.Errorf("no tenant has the domain %q", domain)
}

// getJSON calls the admin API and decodes its answer into v.
func (t *target) getJSON(path string, v any) error {
	resp, err := t.request("GET", path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// maxCell is how much of a record the text table shows; -json has all.
const maxCell = 120

// printReport writes the report as a table: one line per check, then
// what was expected and the fix under each that is not ok.
func printReport(w io.Writer, r *readiness.Report) {
	fmt.Fprintln(w, r.Summary)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tFOUND")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Status, c.Name, cell(c.Found))
		if c.Status != readiness.OK {
			fmt.Fprintf(tw, "\t\texpected: %s\n", cell(c.Expected))
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	tw.Flush()
}

// cell shortens s for the table.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxCell {
		return string(r[:maxCell-1]) + "…"
	}
	return s
}
