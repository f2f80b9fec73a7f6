package server

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/testsink"
)

// TestAdminAPIOnEachBackend: the admin API's writes and reads through the
// relay, on each backend: a tenant and its changes, a credential and an
// API key (the key reaching its own tenant only), a list, suppressions
// added, listed, removed, imported from CSV and exported as CSV, and the
// tenant's deletion.
func TestAdminAPIOnEachBackend(t *testing.T) { eachBackend(t, testAdminAPI) }

func testAdminAPI(t *testing.T, backend string) {
	e := startRelayOn(t, backend, testsink.Options{}, nil)
	e.tenantSetup()
	e.api("PATCH", "/api/v1/tenants/acme", map[string]string{"name": "Acme Dental Group"}, http.StatusOK, nil)
	var tn struct{ Name string }
	e.api("GET", "/api/v1/tenants/acme", nil, http.StatusOK, &tn)
	if tn.Name != "Acme Dental Group" {
		t.Errorf("tenant after PATCH: %+v", tn)
	}
	e.api("POST", "/api/v1/tenants", map[string]string{"id": "other", "name": "Other", "postal_address": "1 Road"}, http.StatusCreated, nil)
	var cred struct{ ID string }
	e.api("POST", "/api/v1/tenants/acme/credentials", map[string]string{}, http.StatusCreated, &cred)
	e.api("DELETE", "/api/v1/tenants/acme/credentials/"+cred.ID, nil, http.StatusNoContent, nil)
	var key struct{ Key string }
	e.api("POST", "/api/v1/tenants/acme/api-keys", map[string]string{}, http.StatusCreated, &key)
	e.api("PUT", "/api/v1/tenants/acme/lists/news", map[string]any{"name": "News", "kind": "marketing"}, http.StatusCreated, nil)

	e.api("PUT", "/api/v1/tenants/acme/suppressions/pat@example.net", map[string]string{"list": "*", "reason": "manual"}, http.StatusCreated, nil)
	e.api("PUT", "/api/v1/tenants/acme/suppressions/sam@example.net", map[string]string{"list": "news", "reason": "manual"}, http.StatusCreated, nil)
	e.api("DELETE", "/api/v1/tenants/acme/suppressions/sam@example.net?list=news&reason=manual", nil, http.StatusNoContent, nil)
	csv := "address,list,reason\nkim@example.net,news,manual\nlee@example.net,*,complaint\nnot-an-address,,\n"
	code, body := e.raw("POST", "/api/v1/tenants/acme/suppressions/import", "text/csv", csv, e.token)
	if code != http.StatusOK || !strings.Contains(body, "not-an-address") {
		t.Errorf("import = %d %s, want a report naming the bad row", code, body)
	}
	code, body = e.raw("GET", "/api/v1/tenants/acme/suppressions/export", "", "", key.Key)
	for _, want := range []string{"pat@example.net", "kim@example.net", "lee@example.net"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("export with the tenant's key = %d, lacks %s:\n%s", code, want, body)
		}
	}
	if strings.Contains(body, "sam@example.net") {
		t.Errorf("export holds the removed suppression:\n%s", body)
	}
	if code, body := e.raw("GET", "/api/v1/tenants/other/suppressions", "", "", key.Key); code != http.StatusForbidden && code != http.StatusNotFound {
		t.Errorf("acme's key on another tenant = %d %s", code, body)
	}

	e.api("DELETE", "/api/v1/tenants/acme", nil, http.StatusNoContent, nil)
	e.api("GET", "/api/v1/tenants/acme", nil, http.StatusNotFound, nil)
	if code, _ := e.raw("GET", "/api/v1/tenants/acme/suppressions", "", "", key.Key); code != http.StatusUnauthorized {
		t.Errorf("the deleted tenant's key = %d, want 401", code)
	}
}

// raw calls the admin API with a body of its own and returns the status
// and the body.
func (e *relayEnv) raw(method, path, contentType, body, token string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.r.AdminAddr()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBackupAPIOnPostgres: GET /api/v1/backup (heed backup -api) streams a
// copy of heed.db on bbolt; on PostgreSQL there is no file to copy, and
// the operator is told how to back the database up instead of 404.
func TestBackupAPIOnPostgres(t *testing.T) {
	e := startRelayOn(t, "postgres", testsink.Options{}, nil)
	var p struct {
		Status int
		Detail string
	}
	e.api("GET", "/api/v1/backup", nil, http.StatusNotImplemented, &p)
	if p.Status != http.StatusNotImplemented || !strings.Contains(p.Detail, "pg_dump") {
		t.Errorf("backup on PostgreSQL: %+v", p)
	}
}
