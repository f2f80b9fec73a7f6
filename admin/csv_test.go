package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func (e *env) csv(method, path, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestSuppressionCSV: an import through the API reports every rejected
// row by its line, is idempotent, and the export streams it back with
// formula-looking cells neutralised.
func TestSuppressionCSV(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	file := "address,list,reason\r\n" +
		"pat@example.net,marketing,unsubscribe\r\n" +
		"not an address,,\r\n" +
		"sam@example.net,newsletter,\r\n" + // no such list
		"=cmd@example.net,*,import\r\n" +
		"kim@example.net,,bogus\r\n"
	var rep struct {
		DryRun                                 bool `json:"dry_run"`
		Rows, Valid, Added, Existing, Rejected int
		Errors                                 []struct {
			Line            int
			Address, Reason string
		}
	}
	decode := func(resp *http.Response, b []byte) {
		t.Helper()
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
	}
	decode(e.csv("POST", "/api/v1/tenants/acme/suppressions/import?dry_run=true", file))
	if !rep.DryRun || rep.Rows != 5 || rep.Valid != 2 || rep.Added != 0 || rep.Rejected != 3 {
		t.Fatalf("dry run %+v", rep)
	}
	var list struct{ Suppressions []any }
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions", "", &list)
	if len(list.Suppressions) != 0 {
		t.Fatalf("a dry run wrote %d entries", len(list.Suppressions))
	}
	var audit struct{ Records []AuditRecord }
	e.want(200, "GET", "/api/v1/audit", "", &audit)
	if len(audit.Records) != 1 { // the tenant's creation; the dry run changed nothing
		t.Fatalf("audit after a dry run: %+v", audit.Records)
	}
	decode(e.csv("POST", "/api/v1/tenants/acme/suppressions/import", file))
	if rep.Added != 2 || rep.Rejected != 3 || len(rep.Errors) != 3 {
		t.Fatalf("import %+v", rep)
	}
	for i, line := range []int{3, 4, 6} {
		if rep.Errors[i].Line != line || rep.Errors[i].Reason == "" {
			t.Errorf("error %d: %+v, want line %d", i, rep.Errors[i], line)
		}
	}
	if !strings.Contains(rep.Errors[1].Reason, "newsletter") {
		t.Errorf("the unknown list's reason: %q", rep.Errors[1].Reason)
	}
	decode(e.csv("POST", "/api/v1/tenants/acme/suppressions/import", file))
	if rep.Added != 0 || rep.Existing != 2 {
		t.Fatalf("re-import %+v", rep)
	}
	// Cut short by a runaway quote after rows were written: still audited,
	// with the record written before its first batch (202) and the one of
	// its answer.
	e.want(200, "GET", "/api/v1/audit", "", &audit)
	before := len(audit.Records)
	resp0, b0 := e.csv("POST", "/api/v1/tenants/acme/suppressions/import", "address\nlee@example.net\n\"open\n"+strings.Repeat("x\n", 700000))
	problem(t, resp0, b0, http.StatusBadRequest)
	e.want(200, "GET", "/api/v1/audit", "", &audit)
	if got := audit.Records[before:]; len(got) != 2 || got[0].Status != http.StatusAccepted || got[1].Status != http.StatusBadRequest {
		t.Errorf("an import cut short after writing rows left the audit records %+v, want a 202 and a 400", got)
	}
	resp, b := e.csv("POST", "/api/v1/tenants/acme/suppressions/import", "email\r\nx@example.net\r\n")
	problem(t, resp, b, http.StatusBadRequest)
	resp, b = e.call("POST", "/api/v1/tenants/acme/suppressions/import", `{"address":"x@example.net"}`)
	problem(t, resp, b, http.StatusUnsupportedMediaType)

	resp, b = e.call("GET", "/api/v1/tenants/acme/suppressions/export", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("export %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := string(b)
	if !strings.HasPrefix(out, "address,list,reason,channel,created_at,message_id") ||
		!strings.Contains(out, "\n'=cmd@example.net,*,import") || !strings.Contains(out, "pat@example.net,marketing,unsubscribe") {
		t.Errorf("export:\n%s", out)
	}
	_, b = e.call("GET", "/api/v1/tenants/acme/suppressions/export?reason=unsubscribe", "")
	if strings.Contains(string(b), "cmd@") || !strings.Contains(string(b), "pat@") {
		t.Errorf("export by reason:\n%s", b)
	}
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/suppressions/export?since=yesterday", "")
	// A malformed list is a problem, not a 200 whose body is cut short.
	e.wantProblem(400, "GET", "/api/v1/tenants/acme/suppressions/export?list=no%20such%20list", "")

	// The evidence of one address.
	var ev struct {
		Suppressions []struct {
			List, Reason, Channel string
			CreatedAt             string `json:"created_at"`
		}
	}
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions/pat@example.net", "", &ev)
	if len(ev.Suppressions) != 1 || ev.Suppressions[0].Channel != "import" || ev.Suppressions[0].CreatedAt == "" {
		t.Errorf("evidence %+v", ev)
	}
	e.wantProblem(404, "GET", "/api/v1/tenants/acme/suppressions/nobody@example.net", "")
	// Filters on the listing.
	e.want(200, "GET", "/api/v1/tenants/acme/suppressions?reason=import", "", &list)
	if len(list.Suppressions) != 2 { // =cmd and lee, from the import cut short
		t.Errorf("listing by reason: %+v", list)
	}
}
