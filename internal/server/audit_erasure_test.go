package server

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/idna"
)

// spelled is one mailbox and the spellings a client may use for it in a
// request path (already percent-encoded as sent).
type spelled struct {
	norm  string   // as Heed stores it
	paths []string // as sent: put, delete, put again, erase
	forms []string // what must not be in any file afterwards
}

// TestErasureEverySpelling: addresses acted on through the admin API in
// every spelling a client may send (quoted local part, a Unicode domain as
// Unicode and as A-labels, mixed case, '/' in the local part, everything
// percent-encoded) and then erased through DELETE /api/v1/privacy/{address}
// in yet another spelling leave no spelling of themselves in any file of
// the data directory: not in the audit log, not in freed pages.
func TestErasureEverySpelling(t *testing.T) {
	cases := []spelled{{
		norm:  `"zoe smith"@example.net`,
		paths: []string{`%22zoe%20smith%22%40example.net`, `%22Zoe%20Smith%22@example.net`, `%22ZOE%20SMITH%22@EXAMPLE.NET`, `%22zoe%20Smith%22@example.net.`},
		forms: []string{`zoe smith`, `zoe%20smith`, `zoe\x20smith`},
	}, {
		norm:  "uli@xn--bcher-kva.example",
		paths: []string{"uli@b%C3%BCcher.example", "ULI@XN--BCHER-KVA.EXAMPLE", "Uli@B%C3%9CCHER.example", "uli%40xn--bcher-kva.example"},
		forms: []string{"uli@bücher.example", "uli@b%c3%bccher.example", "uli@xn--bcher-kva.example", "uli%40", "bücher", "b%c3%bccher", "b%c3%9ccher", "xn--bcher-kva"},
	}, {
		norm:  "mia.jones@example.net",
		paths: []string{"Mia.Jones@Example.NET", "MIA.JONES@EXAMPLE.NET", "mia.jones@example.net", "Mia.Jones%40Example.Net"},
		forms: []string{"mia.jones@example.net", "mia.jones%40"},
	}, {
		norm:  "a/b.c@example.net",
		paths: []string{"a%2Fb.c@example.net", "A%2FB.C@Example.net", "a%2fb.c%40example.net", "A%2Fb.C@example.NET"},
		forms: []string{"a/b.c@example.net", "a%2fb.c", "b.c@example.net"},
	}, {
		norm:  "kim.lee@example.net",
		paths: []string{"%6B%69%6D%2E%6C%65%65%40%65%78%61%6D%70%6C%65%2E%6E%65%74", "%4B%49%4D.lee@example.net", "Kim.Lee@Example.Net", "%6b%69%6d.LEE%40EXAMPLE.net"},
		forms: []string{"kim.lee@example.net", "kim.lee%40", "%6b%69%6d"},
	}}

	cfg := testConfig(t)
	r, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e := &relayEnv{t: t, r: r, cfg: cfg, token: cfg.Admin.Tokens[0]}
	defer r.Shutdown()
	e.api("POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil)
	for _, c := range cases {
		p := "/api/v1/tenants/acme/suppressions/"
		e.api("PUT", p+c.paths[0], map[string]string{"list": "marketing", "reason": "manual"}, http.StatusCreated, nil)
		e.api("DELETE", p+c.paths[1]+"?list=marketing&reason=manual", nil, http.StatusNoContent, nil)
		e.api("PUT", p+c.paths[2], map[string]string{"list": "*", "reason": "manual"}, http.StatusCreated, nil)
		var x struct{ Address string }
		e.api("GET", "/api/v1/privacy/"+c.paths[3], nil, http.StatusOK, &x)
		if x.Address != c.norm {
			t.Errorf("%s: export of %q is of %q", c.norm, c.paths[3], x.Address)
		}
		var er struct{ Address string }
		e.api("DELETE", "/api/v1/privacy/"+c.paths[3], nil, http.StatusOK, &er)
	}
	var audit struct {
		Records []struct{ Action, Target string }
	}
	e.api("GET", "/api/v1/audit?limit=1000", nil, http.StatusOK, &audit)
	// Each case: PUT, DELETE, PUT, and the erasure's two (202 before its
	// transactions, 200 after them).
	if n := len(audit.Records); n != 1+5*len(cases) {
		t.Errorf("%d audit records, want %d (who did what when is kept)", n, 1+5*len(cases))
	}
	for _, rec := range audit.Records {
		if strings.Contains(rec.Action, ":address") && !strings.HasSuffix(rec.Target, "/[erased]") {
			t.Errorf("audit record after the erasure: %+v", rec)
		}
	}
	r.Shutdown()

	var needles [][]byte
	for _, c := range cases {
		forms := append([]string{c.norm}, c.forms...)
		for _, p := range c.paths {
			dec, err := url.PathUnescape(p)
			if err != nil {
				t.Fatal(err)
			}
			forms = append(forms, p, dec, url.PathEscape(dec), url.QueryEscape(dec))
			if at := strings.LastIndexByte(dec, '@'); at >= 0 {
				if u, err := idna.ToUnicode(dec[at+1:]); err == nil {
					forms = append(forms, dec[:at+1]+u)
				}
			}
		}
		for _, f := range forms {
			needles = append(needles, bytes.ToLower([]byte(f)))
		}
	}
	err = filepath.WalkDir(cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lower := asciiLower(b)
		for _, n := range needles {
			if i := bytes.Index(lower, n); i >= 0 {
				lo, hi := max(0, i-120), min(len(b), i+len(n)+40)
				t.Errorf("%s holds %q: %q", p, n, b[lo:hi])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
