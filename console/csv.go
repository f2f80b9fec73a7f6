package console

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"github.com/heedmail/heed/internal/access"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// maxImportUpload bounds an uploaded CSV with its form, as the API bounds
// the body of POST …/suppressions/import (about ten million rows).
const maxImportUpload = 1 << 30

type importData struct {
	Tenant tenant.Tenant
	DryRun bool
	Report *suppression.ImportReport
	// Stopped is why the import stopped before the end of the file.
	Stopped string
}

// importPage is the upload form; without JavaScript the browser shows
// the report when the upload completes.
func (s *server) importPage(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	s.render(w, r, http.StatusOK, "import", page{Title: "Import suppressions: " + t.Name, User: v, CSRF: v.sess.CSRF, Data: &importData{Tenant: t}})
}

// importSuppressions streams the uploaded CSV into suppression.ImportCSV
// with the API's options (the tenant's lists, an optional dry run) and
// shows the per-row report. The form was read by signedIn up to its
// CSRF token; the rest is read here, part by part, so that a large file
// is never held in memory or written to a temporary file.
func (s *server) importSuppressions(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	ctx := r.Context()
	imp, ok := s.Suppressions.(suppression.Importer)
	if !ok || v.form == nil {
		s.fail(w, r, http.StatusNotFound, "Importing is not available.")
		return
	}
	lists, err := s.Tenants.Lists(ctx, t.ID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	known := map[string]bool{}
	for _, l := range lists {
		known[l.ID] = true
	}
	d := importData{Tenant: t}
	file, err := nextFile(v.form, &d.DryRun)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "Choose a CSV file to import.")
		return
	}
	c := changeOf{t.ID, http.MethodPost + " /api/v1/tenants/:tenant/suppressions/import", "/api/v1/tenants/" + t.ID + "/suppressions/import"}
	if !d.DryRun {
		// Written in many transactions of a batch each, as the API's
		// import: a record before the first write (202), and one of how
		// it ended after the last.
		if err := s.recordAlone(ctx, r, v, c, http.StatusAccepted); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	rep, err := suppression.ImportCSV(ctx, imp, t.ID, file, suppression.ImportOptions{
		DryRun: d.DryRun,
		CheckList: func(id string) error {
			if !known[id] {
				return fmt.Errorf("tenant %q has no list %q", t.ID, id)
			}
			return nil
		},
	})
	d.Report = &rep
	status := http.StatusOK
	var big *http.MaxBytesError
	switch {
	case errors.As(err, &big):
		status, d.Stopped = http.StatusRequestEntityTooLarge, fmt.Sprintf("The file is larger than %d bytes: split it.", int64(maxImportUpload))
	case errors.Is(err, suppression.ErrInvalid):
		status, d.Stopped = http.StatusBadRequest, err.Error()
	case err != nil:
		status = http.StatusInternalServerError
	}
	if !d.DryRun { // a dry run changes nothing
		s.recordAfter(ctx, r, v, c, status)
	}
	if status == http.StatusInternalServerError {
		s.internal(w, r, err)
		return
	}
	s.render(w, r, status, "import", page{Title: "Import report: " + t.Name, User: v, CSRF: v.sess.CSRF, Data: &d})
}

// nextFile reads the form's parts after the CSRF token up to the file,
// noting the dry-run box on the way; the file's part is the CSV.
func nextFile(form *multipart.Reader, dry *bool) (io.Reader, error) {
	for {
		p, err := form.NextPart()
		if err != nil {
			return nil, err
		}
		switch p.FormName() {
		case "dry_run":
			*dry = true
		case "file":
			if p.FileName() == "" {
				return nil, errors.New("no file chosen")
			}
			return p, nil
		}
	}
}

// multipartForm returns the reader of a multipart/form-data POST, or nil
// for another kind of body.
func multipartForm(w http.ResponseWriter, r *http.Request) *multipart.Reader {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxImportUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil
	}
	return mr
}

// formToken reads the first part of a multipart form, which must be the
// CSRF token: the page puts it first and browsers send the fields in
// the order of the document (HTML's form submission algorithm).
func formToken(mr *multipart.Reader) string {
	p, err := mr.NextPart()
	if err != nil || p.FormName() != "csrf" {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(p, 256))
	if err != nil {
		return ""
	}
	return string(b)
}

// exportSuppressions downloads the tenant's list as CSV, the API's
// GET …/suppressions/export.
func (s *server) exportSuppressions(w http.ResponseWriter, r *http.Request, v *visit, t tenant.Tenant) {
	if s.Suppressions == nil {
		s.fail(w, r, http.StatusNotFound, "The suppression list is not available.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="`+t.ID+`-suppressions.csv"`)
	cw := &committed{ResponseWriter: w}
	_, err := suppression.ExportCSV(r.Context(), s.Suppressions, t.ID, cw, suppression.ExportOptions{})
	switch {
	case err == nil:
	case !cw.wrote:
		h.Del("Content-Type")
		h.Del("Content-Disposition")
		s.internal(w, r, err)
	default:
		// The 200 is sent: cut the body short, so that the browser sees
		// a failed download rather than a short list.
		s.Logger.Error("console: suppression export cut short", "tenant", t.ID, "user", v.user.Username, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// committed notes whether anything was written.
type committed struct {
	http.ResponseWriter
	wrote bool
}

func (c *committed) Write(b []byte) (int, error) {
	c.wrote = true
	return c.ResponseWriter.Write(b)
}

// canWrite says whether v may change t's data (the forms are shown).
func canWrite(v *visit, t tenant.Tenant) bool {
	return access.Check(v.principal(), access.TenantWrite, t.ID) == nil
}
