package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// page is what every template gets.
type page struct {
	Title string
	// User is the signed-in user (nil on the sign-in pages).
	User *visit
	// CSRF is the token the page's forms carry.
	CSRF string
	// Problem is an error to show above the page's form.
	Problem string
	// Notice is a confirmation of what was done.
	Notice string
	Data   any
}

// Username and Operator are the layout's view of the user.
func (p page) Username() string {
	if p.User == nil {
		return ""
	}
	return p.User.user.Username
}

func (p page) Operator() bool { return p.User != nil && p.User.operator() }

// Tenant is the signed-in tenant user's tenant ("" for an operator).
func (p page) Tenant() string {
	if p.User == nil {
		return ""
	}
	return p.User.user.Tenant
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 MST") },
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"add":  func(a, b int) int { return a + b },
	"mul":  func(a, b int) int { return a * b },
	// row is what the Events page's "event-row" template takes.
	"row": func(tenantID string, ev events.Event) eventRow { return eventRow{tenantID, ev} },
	// confirmation is the name a credential is revoked by.
	"confirmation": confirmation,
	// revoke is what the tenant page's "revoke" template takes: the
	// form that revokes c, a credential or an API key (kind is the
	// path segment, "credentials" or "api-keys").
	"revoke": func(csrf, tenantID, kind string, c tenant.Credential) revokeForm {
		return revokeForm{CSRF: csrf, Tenant: tenantID, Kind: kind, Credential: c}
	},
}

// revokeForm is the data of the tenant page's "revoke" template.
type revokeForm struct {
	CSRF, Tenant, Kind string
	Credential         tenant.Credential
}

// parsePages parses each page template with the layout.
func parsePages() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, f))
	}
	return pages
}

// render writes a page; a template that fails is an internal error, not
// half a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	var b bytes.Buffer
	if err := s.pages[name].Execute(&b, p); err != nil {
		s.internal(w, r, fmt.Errorf("template %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	b.WriteTo(w)
}

// fail writes an error page with status and a message for the person.
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	var b bytes.Buffer
	err := s.pages["error"].Execute(&b, page{Title: http.StatusText(status), Problem: msg, Data: status})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err != nil {
		fmt.Fprintf(w, "<!doctype html><title>%d</title><p>%d %s</p>", status, status, template.HTMLEscapeString(http.StatusText(status)))
		return
	}
	b.WriteTo(w)
}

// internal logs an unexpected error with an id and shows only the id.
func (s *server) internal(w http.ResponseWriter, r *http.Request, err error) {
	id := time.Now().UTC().Format("20060102T150405.000")
	s.Logger.Error("console: internal error", "id", id, "path", r.URL.Path, "err", err)
	s.fail(w, r, http.StatusInternalServerError, "Something went wrong on our side (error "+id+" in the log). Try again.")
}
