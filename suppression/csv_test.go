package suppression_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	. "github.com/heedmail/heed/suppression"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/store"
)

// openCSVStore is openStore for a testing.TB, so a fuzz target can open its
// store once for all its inputs.
func openCSVStore(tb testing.TB) *Service {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
		db, err := store.Open(path, store.Options{})
		if err != nil {
			tb.Errorf("reopen (consistency check): %v", err)
			return
		}
		db.Close()
	})
	return boltdb.Suppressions(db, testHashKey, func() time.Time { return testNow })
}

func importString(t *testing.T, imp Importer, tenantID, in string, o ImportOptions) ImportReport {
	t.Helper()
	rep, err := ImportCSV(context.Background(), imp, tenantID, strings.NewReader(in), o)
	if err != nil {
		t.Fatalf("ImportCSV: %v (report %+v)", err, rep)
	}
	checkCounts(t, rep, o.DryRun)
	return rep
}

func checkCounts(t testing.TB, rep ImportReport, dry bool) {
	t.Helper()
	if rep.Rows != rep.Valid+rep.Rejected {
		t.Errorf("Rows %d != Valid %d + Rejected %d", rep.Rows, rep.Valid, rep.Rejected)
	}
	if !dry && rep.Valid != rep.Added+rep.Existing {
		t.Errorf("Valid %d != Added %d + Existing %d", rep.Valid, rep.Added, rep.Existing)
	}
	if dry && (rep.Added != 0 || rep.Existing != 0) {
		t.Errorf("dry run: Added %d, Existing %d; want 0", rep.Added, rep.Existing)
	}
	if rep.Truncated != (rep.Rejected > len(rep.Errors)) {
		t.Errorf("Truncated %v with %d rejected and %d errors", rep.Truncated, rep.Rejected, len(rep.Errors))
	}
}

func TestImportCSVReport(t *testing.T) {
	s := openCSVStore(t)
	in := strings.Join([]string{
		"address,list,reason",                // 1
		"alice@example.com,news,unsubscribe", // 2
		"not-an-address,,",                   // 3
		"bob@example.com,*,",                 // 4
		"carol@example.com,,vacation",        // 5
		"dave@example.com,Bad List,",         // 6
		"erin@example.com,promo,bounce",      // 7
		"frank@example.com,secret,",          // 8
		`gi"na@example.com,news,`,            // 9
		"hank@example.com,news",              // 10
		"ivan@example.com,,Complaint",        // 11
		"ALICE@Example.com,news,unsubscribe", // 12
		",news,manual",                       // 13
		"",
	}, "\r\n")
	checkList := func(id string) error {
		if id == "secret" {
			return errors.New(`no list "secret"`)
		}
		return nil
	}
	rep := importString(t, s, "acme", in, ImportOptions{CheckList: checkList})
	if rep.Rows != 12 || rep.Valid != 4 || rep.Added != 3 || rep.Existing != 1 || rep.Rejected != 8 || rep.Truncated {
		t.Errorf("report = %+v", rep)
	}
	want := []struct {
		line       int
		addr, frag string
	}{
		{3, "not-an-address", "no '@'"},
		{5, "carol@example.com", "reason"},
		{6, "dave@example.com", "list"},
		{7, "erin@example.com", "every list"},
		{8, "frank@example.com", `no list "secret"`},
		{9, "", "bare \""},
		{10, "hank@example.com", "2 fields, the header has 3"},
		{13, "", "address is empty"},
	}
	if len(rep.Errors) != len(want) {
		t.Fatalf("errors = %+v", rep.Errors)
	}
	for i, w := range want {
		e := rep.Errors[i]
		if e.Line != w.line || e.Address != w.addr || !strings.Contains(e.Reason, w.frag) {
			t.Errorf("error %d = %+v; want line %d, address %q, reason with %q", i, e, w.line, w.addr, w.frag)
		}
	}
	got, err := s.Lookup(context.Background(), "acme", "bob@example.com")
	wantBob := Entry{Tenant: "acme", Address: "bob@example.com", List: All, Reason: Import, Channel: "import", Time: testNow}
	if err != nil || len(got) != 1 || got[0] != wantBob {
		t.Errorf("Lookup(bob) = %+v, %v; want [%+v]", got, err, wantBob)
	}
	got, err = s.Lookup(context.Background(), "acme", "ivan@example.com")
	if err != nil || len(got) != 1 || got[0].Reason != Complaint || got[0].List != All {
		t.Errorf("Lookup(ivan) = %+v, %v", got, err)
	}
}

func TestImportCSVHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		list     string
		reason   Reason
	}{
		{"address only", "address\nx@example.com\n", All, Import},
		{"BOM and CRLF", "\uFEFFaddress,list\r\nx@example.com,news\r\n", "news", Import},
		{"reordered, upper case, spaces", "Reason , ADDRESS,List\r\nmanual,x@example.com,news\r\n", "news", Manual},
		{"blank lines", "\n\naddress\n\nx@example.com\n\n", All, Import},
		{"no final line break", "address,reason\nx@example.com,unsubscribe", All, Unsubscribe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openCSVStore(t)
			rep := importString(t, s, "acme", tc.in, ImportOptions{})
			if rep.Rows != 1 || rep.Added != 1 {
				t.Fatalf("report = %+v", rep)
			}
			got, err := s.Lookup(context.Background(), "acme", "x@example.com")
			if err != nil || len(got) != 1 || got[0].List != tc.list || got[0].Reason != tc.reason {
				t.Errorf("Lookup = %+v, %v; want list %q, reason %q", got, err, tc.list, tc.reason)
			}
		})
	}
	for _, tc := range []struct{ name, in, frag string }{
		{"empty", "", "empty"},
		{"only blank lines", "\r\n\n", "empty"},
		{"unknown column", "address,reson\nx@example.com,manual\n", `unknown column "reson"`},
		{"unnamed column", "address,\nx@example.com,\n", `unknown column ""`},
		{"no address", "list,reason\nnews,manual\n", "no address column"},
		{"a list, no header", "x@example.com\ny@example.com\n", `unknown column "x@example.com"`},
		{"twice", "address,list,Address\n", `"address" appears twice`},
		{"malformed", "address,\"list\n", "header, line 1"},
		{"too long", "address," + strings.Repeat("x", MaxCSVLine) + "\n", "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openCSVStore(t)
			rep, err := ImportCSV(context.Background(), s, "acme", strings.NewReader(tc.in), ImportOptions{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.frag) {
				t.Errorf("ImportCSV = %v; want ErrInvalid with %q", err, tc.frag)
			}
			if rep.Rows != 0 {
				t.Errorf("report = %+v", rep)
			}
			if got, _ := listAll(t, s, "acme", "", 0); len(got) != 0 {
				t.Errorf("wrote %+v", got)
			}
		})
	}
}

func TestImportCSVLimits(t *testing.T) {
	s := openCSVStore(t)
	long := "x@example.com," + strings.Repeat("a", MaxCSVLine)
	in := "address,list\n" + // 1
		long + "\n" + // 2: cut, rejected
		"y@example.com,news\n" + // 3
		strings.Repeat("z@example.com,", 17) + "news\n" + // 4: 18 fields
		"w@example.com,\"news\"\"\n" + // 5: quote not closed here...
		"v@example.com,news\n" // 6: ... swallowed, up to the end
	rep := importString(t, s, "acme", in, ImportOptions{})
	if rep.Rows != 4 || rep.Added != 1 || rep.Rejected != 3 {
		t.Errorf("report = %+v", rep)
	}
	lines := []int{}
	for _, e := range rep.Errors {
		lines = append(lines, e.Line)
	}
	if !slices.Equal(lines, []int{2, 4, 5}) || !strings.Contains(rep.Errors[0].Reason, "longer than 4096") ||
		rep.Errors[0].Address != "x@example.com" || !strings.Contains(rep.Errors[1].Reason, "18 fields") {
		t.Errorf("errors = %+v", rep.Errors)
	}

	// A line of exactly MaxCSVLine bytes is not cut.
	exact := "address,message_id\n" + "q@example.com," + strings.Repeat("m", 128) + strings.Repeat(" ", MaxCSVLine-14-128) + "\n"
	if rep := importString(t, s, "acme", exact, ImportOptions{}); rep.Added != 1 {
		t.Errorf("a line of %d bytes: %+v", MaxCSVLine, rep)
	}

	// The reported address is cut to 100 bytes, at a character boundary.
	addr := strings.Repeat("é", 60) + "@"
	rep = importString(t, s, "acme", "address\n"+addr+"\n", ImportOptions{})
	if len(rep.Errors) != 1 || rep.Errors[0].Address != strings.Repeat("é", 50) {
		t.Errorf("errors = %+v", rep.Errors)
	}
}

func TestImportCSVMaxErrors(t *testing.T) {
	s := openCSVStore(t)
	in := "address\n" + strings.Repeat("bad\n", 5) + "ok@example.com\n"
	rep := importString(t, s, "acme", in, ImportOptions{MaxErrors: 2})
	if rep.Rejected != 5 || len(rep.Errors) != 2 || !rep.Truncated || rep.Added != 1 || rep.Errors[1].Line != 3 {
		t.Errorf("report = %+v", rep)
	}
	rep = importString(t, s, "acme", in, ImportOptions{MaxErrors: -1})
	if rep.Rejected != 5 || len(rep.Errors) != 0 || !rep.Truncated || rep.Existing != 1 {
		t.Errorf("report = %+v", rep)
	}
}

// countingImporter records the size of every batch.
type countingImporter struct {
	Importer
	batches []int
	fail    int // fail the batch of this number (from 1)
}

func (c *countingImporter) Import(ctx context.Context, es []Entry) (int, error) {
	c.batches = append(c.batches, len(es))
	if len(c.batches) == c.fail {
		return 0, errors.New("disk full")
	}
	return c.Importer.Import(ctx, es)
}

func bulkCSV(n int) string {
	var b strings.Builder
	b.WriteString("address,list,reason\n")
	for i := range n {
		fmt.Fprintf(&b, "user%d@example.com,*,unsubscribe\n", i)
	}
	return b.String()
}

func TestImportCSVBatches(t *testing.T) {
	s := openCSVStore(t)
	in := bulkCSV(25000)
	c := &countingImporter{Importer: s}
	rep := importString(t, c, "acme", in, ImportOptions{})
	if rep.Rows != 25000 || rep.Added != 25000 || !slices.Equal(c.batches, []int{10000, 10000, 5000}) {
		t.Errorf("report %+v, batches %v", rep, c.batches)
	}

	// Idempotent: a second import adds nothing.
	rep = importString(t, s, "acme", in, ImportOptions{})
	if rep.Rows != 25000 || rep.Added != 0 || rep.Existing != 25000 {
		t.Errorf("re-import: %+v", rep)
	}

	// A failed write stops the import; the report has what was written.
	c = &countingImporter{Importer: s, fail: 2}
	rep, err := ImportCSV(context.Background(), c, "other", strings.NewReader(in), ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "lines 10002 to 20001") || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("err = %v", err)
	}
	if rep.Rows != 10000 || rep.Added != 10000 {
		t.Errorf("report after a failed write: %+v", rep)
	}

	// A cancelled context stops it before the next write.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c = &countingImporter{Importer: s}
	if _, err := ImportCSV(ctx, c, "third", strings.NewReader(in), ImportOptions{}); !errors.Is(err, context.Canceled) || len(c.batches) != 0 {
		t.Errorf("cancelled: %v, batches %v", err, c.batches)
	}
}

func TestImportCSVRunaway(t *testing.T) {
	s := openCSVStore(t)
	in := bulkCSV(10) + `open@example.com,"news` + "\n" + bulkCSV(60000)[20:]
	rep, err := ImportCSV(context.Background(), s, "acme", strings.NewReader(in), ImportOptions{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "quoted field") {
		t.Errorf("err = %v", err)
	}
	if rep.Rows != 10 || rep.Added != 10 {
		t.Errorf("report = %+v", rep)
	}
}

func TestImportCSVDryRun(t *testing.T) {
	s := openCSVStore(t)
	in := "address,list\na@example.com,news\nb@example.com,\nbad,\na@example.com,news\n"
	rep := importString(t, s, "acme", in, ImportOptions{DryRun: true})
	if rep.Rows != 4 || rep.Valid != 3 || rep.Rejected != 1 || rep.Added != 0 {
		t.Errorf("report = %+v", rep)
	}
	if got, _ := listAll(t, s, "acme", "", 0); len(got) != 0 {
		t.Errorf("a dry run wrote %+v", got)
	}
	if rep := importString(t, nil, "acme", in, ImportOptions{DryRun: true}); rep.Valid != 3 {
		t.Errorf("dry run without a store: %+v", rep)
	}
	if _, err := ImportCSV(context.Background(), s, "Not A Tenant", strings.NewReader(in), ImportOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad tenant: %v", err)
	}
}

// exportEntries are entries whose cells a spreadsheet could run as formulas,
// beside ordinary ones.
var exportEntries = []Entry{
	{Tenant: "acme", Address: "-bob@example.com", List: "news", Reason: Unsubscribe, Channel: "+cmd",
		MessageID: `=HYPERLINK("http://evil.example/","click")`, Time: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)},
	{Tenant: "acme", Address: "=sum@example.com", List: All, Reason: Bounce, Channel: "@dsn", MessageID: "\tx"},
	{Tenant: "acme", Address: "carol@example.com", List: All, Reason: Manual, Channel: "api", MessageID: "-1+2"},
	{Tenant: "acme", Address: "carol@example.com", List: "promo", Reason: Import, Channel: "import"},
	{Tenant: "acme", Address: "dan@example.com", List: All, Reason: Complaint, Channel: "arf",
		Time: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)},
}

func addExportEntries(t *testing.T, s Store) {
	for _, e := range exportEntries {
		mustAdd(t, s, e)
	}
	mustAdd(t, s, Entry{Tenant: "other", Address: "eve@example.com", List: All, Reason: Manual})
}

func exportString(t *testing.T, s Store, tenantID string, o ExportOptions) (string, [][]string) {
	t.Helper()
	var buf bytes.Buffer
	n, err := ExportCSV(context.Background(), s, tenantID, &buf, o)
	if err != nil {
		t.Fatalf("ExportCSV: %v", err)
	}
	recs, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
	if err != nil {
		t.Fatalf("the export is not CSV: %v\n%s", err, buf.Bytes())
	}
	if n != len(recs)-1 || !slices.Equal(recs[0], []string{"address", "list", "reason", "channel", "created_at", "message_id"}) {
		t.Fatalf("ExportCSV = %d rows:\n%s", n, buf.Bytes())
	}
	return buf.String(), recs[1:]
}

func TestExportCSVNeutralisesFormulas(t *testing.T) {
	s := openCSVStore(t)
	addExportEntries(t, s)
	_, recs := exportString(t, s, "acme", ExportOptions{})
	if len(recs) != len(exportEntries) {
		t.Fatalf("exported %q", recs)
	}
	for _, r := range recs {
		for i, c := range r {
			if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
				t.Errorf("cell %d of %q starts a formula", i, r)
			}
		}
		switch r[0] {
		case "'-bob@example.com":
			if r[3] != "'+cmd" || r[5] != `'=HYPERLINK("http://evil.example/","click")` || r[4] != "2024-01-02T03:04:05.000000006Z" {
				t.Errorf("bob: %q", r)
			}
		case "'=sum@example.com":
			if r[3] != "'@dsn" || r[5] != "'\tx" {
				t.Errorf("sum: %q", r)
			}
		case "carol@example.com":
			if r[2] == "manual" && r[5] != "'-1+2" {
				t.Errorf("carol: %q", r)
			}
		case "dan@example.com":
		default:
			t.Errorf("unexpected row %q", r)
		}
	}
}

func TestExportCSVFilters(t *testing.T) {
	s := openCSVStore(t)
	addExportEntries(t, s)
	for _, tc := range []struct {
		o    ExportOptions
		want int
	}{
		{ExportOptions{List: All}, 3},
		{ExportOptions{List: "promo"}, 1},
		{ExportOptions{Reason: Manual}, 1},
		{ExportOptions{List: All, Reason: Bounce}, 1},
		{ExportOptions{Since: testNow}, 4},
		{ExportOptions{Since: testNow.Add(time.Nanosecond)}, 1},
	} {
		if _, recs := exportString(t, s, "acme", tc.o); len(recs) != tc.want {
			t.Errorf("%+v: exported %q; want %d rows", tc.o, recs, tc.want)
		}
	}
	for _, o := range []ExportOptions{{List: "Bad List"}, {Reason: "vacation"}} {
		if _, err := ExportCSV(context.Background(), s, "acme", &bytes.Buffer{}, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v; want ErrInvalid", o, err)
		}
	}
}

func TestExportCSVRoundTrip(t *testing.T) {
	s := openCSVStore(t)
	addExportEntries(t, s)
	// Enough to take several pages of List.
	var bulk []Entry
	for i := range 2500 {
		bulk = append(bulk, Entry{Tenant: "acme", Address: fmt.Sprintf("u%d@example.com", i), List: "news", Reason: Unsubscribe, Channel: "one-click"})
	}
	if _, err := s.Import(context.Background(), bulk); err != nil {
		t.Fatal(err)
	}
	out, _ := exportString(t, s, "acme", ExportOptions{})
	rep := importString(t, s, "copy", out, ImportOptions{})
	n := len(exportEntries) + len(bulk)
	if rep.Rows != n || rep.Added != n {
		t.Fatalf("report = %+v", rep)
	}
	strip := func(es []Entry) []Entry {
		for i := range es {
			es[i].Tenant = ""
		}
		return es
	}
	orig, _ := listAll(t, s, "acme", "", 1000)
	copied, _ := listAll(t, s, "copy", "", 1000)
	key := func(a, b Entry) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	orig, copied = strip(orig), strip(copied)
	slices.SortFunc(orig, key)
	slices.SortFunc(copied, key)
	if !slices.Equal(orig, copied) {
		t.Errorf("the copy differs:\n%+v\n%+v", orig[:5], copied[:5])
	}
	if out2, _ := exportString(t, s, "copy", ExportOptions{}); len(out2) != len(out) {
		t.Errorf("the copy exports %d bytes, the original %d", len(out2), len(out))
	}
}

// FuzzImportCSV feeds any bytes to ImportCSV, for real and as a dry run, into
// one store for the whole run: no panic, and the counts always add up.
func FuzzImportCSV(f *testing.F) {
	f.Add([]byte("address,list,reason\nx@example.com,news,unsubscribe\n"))
	s := openCSVStore(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxErrors = 5
		check := func(rep ImportReport, err error, dry bool) {
			if err == nil {
				checkCounts(t, rep, dry)
			} else if rep.Rows != rep.Valid+rep.Rejected {
				t.Errorf("after %v: report %+v", err, rep)
			}
			if len(rep.Errors) > maxErrors {
				t.Errorf("%d errors kept", len(rep.Errors))
			}
			for _, e := range rep.Errors {
				if e.Line < 1 || len(e.Address) > MaxReportedAddress || e.Reason == "" {
					t.Errorf("row error %+v", e)
				}
			}
		}
		dry, derr := ImportCSV(ctx, nil, "fuzz", bytes.NewReader(in), ImportOptions{DryRun: true, MaxErrors: maxErrors})
		check(dry, derr, true)
		rep, err := ImportCSV(ctx, s, "fuzz", bytes.NewReader(in), ImportOptions{MaxErrors: maxErrors})
		check(rep, err, false)
		if (err == nil) != (derr == nil) || err == nil && (rep.Valid != dry.Valid || rep.Rejected != dry.Rejected) {
			t.Errorf("dry run %+v, %v; import %+v, %v", dry, derr, rep, err)
		}
	})
}

// TestImportCSVPathological: inputs built to make a CSV reader hold or
// loop: the counts still add up, and the import ends.
func TestImportCSVPathological(t *testing.T) {
	s := openCSVStore(t)
	for _, tc := range []struct {
		name, in string
		fatal    bool
	}{
		{"quotes", "address\n" + strings.Repeat(`"`, 3<<20), false},
		{"line breaks", "address\n" + strings.Repeat("\r\n", 3<<20) + "x@example.com\n", true},
		{"commas", "address\n" + strings.Repeat(",", 3<<20), false},
		{"one long line", "address\n" + strings.Repeat("a", 3<<20) + "\nx@example.com\n", false},
		{"many long lines", "address\n" + strings.Repeat(strings.Repeat("b", MaxCSVLine+1)+"\n", 500), false},
		{"bare quotes", "address\n" + strings.Repeat("a\"b\n", 1<<18), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ImportCSV(context.Background(), s, "acme", strings.NewReader(tc.in), ImportOptions{})
			if (err != nil) != tc.fatal || err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v (report %+v)", err, rep)
			}
			if err == nil {
				checkCounts(t, rep, false)
			}
		})
	}
}

// setSortSizes makes the sorted import's runs, fan-in and batches small
// for one test.
func setSortSizes(t *testing.T, runBytes, fanIn, batch int) {
	t.Helper()
	t.Cleanup(SetSortSizes(runBytes, fanIn, batch))
}

// openIn counts the files of the process open under dir (nameless ones
// too), or skips the test without /proc.
func openIn(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, dir+string(os.PathSeparator)) {
			n++
		}
	}
	return n
}

// checkTempDirClean fails unless dir is empty and no file in it is open.
func checkTempDirClean(t *testing.T, dir string) {
	t.Helper()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("temporary directory: %v, %v", ents, err)
	}
	if n := openIn(t, dir); n != 0 {
		t.Errorf("%d temporary files still open", n)
	}
}

// sortedCSV is a CSV of n rows with repeated entries far apart (in other
// runs) and next to each other (in one run), rejected rows, and every
// channel different, so that which row of an entry was kept shows.
func sortedCSV(n int) string {
	var b strings.Builder
	b.WriteString("address,list,reason,channel\n")
	lists := []string{"*", "news", "promo", ""}
	reasons := []string{"", "unsubscribe", "manual", "bounce", "complaint"}
	for i := range n {
		addr := fmt.Sprintf("user%d@example.com", i%150)
		if i%41 == 0 {
			addr = "not an address"
		}
		row := fmt.Sprintf("%s,%s,%s,ch%d\n", addr, lists[i%4], reasons[i%5], i)
		b.WriteString(row)
		if i%37 == 0 {
			b.WriteString(strings.Replace(row, fmt.Sprintf("ch%d", i), "again", 1))
		}
	}
	return b.String()
}

// tenantEntries returns every entry of a tenant, tenant left out.
func tenantEntries(t *testing.T, s Store, tenantID string) []Entry {
	t.Helper()
	var all []Entry
	cursor := ""
	for {
		es, next, err := s.List(context.Background(), tenantID, "", cursor, MaxLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			e.Tenant = ""
			all = append(all, e)
		}
		if next == "" {
			return all
		}
		cursor = next
	}
}

// TestImportCSVSorted: the sorted import, over many runs merged on
// several levels, in small batches, imports the same entries (the first
// row of each) and reports the same counts as Import by batches.
func TestImportCSVSorted(t *testing.T) {
	setSortSizes(t, 2048, 3, 7)
	s := openCSVStore(t)
	ctx := context.Background()
	for _, tn := range []string{"batch", "sorted"} {
		for _, e := range []Entry{
			{Tenant: tn, Address: "user1@example.com", List: "news", Reason: Unsubscribe, Channel: "pre"},
			{Tenant: tn, Address: "user2@example.com", List: "promo", Reason: Manual, Channel: "pre"},
		} {
			if _, err := s.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	in := sortedCSV(1200)
	dir := t.TempDir()
	want := importString(t, &countingImporter{Importer: s}, "batch", in, ImportOptions{TempDir: dir})
	spy := &SortedSpy{Service: s}
	maxOpen := 0
	spy.During = func() { maxOpen = max(maxOpen, openIn(t, dir)) }
	got := importString(t, spy, "sorted", in, ImportOptions{TempDir: dir})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sorted import's report\n%+v\nbatch import's\n%+v", got, want)
	}
	if want.Existing <= 2 || want.Rejected == 0 || want.Added == 0 {
		t.Errorf("the test's CSV has too few duplicates or rejects: %+v", want)
	}
	if maxOpen < 2 {
		t.Errorf("at most %d runs open while writing: the test does not merge", maxOpen)
	}
	checkTempDirClean(t, dir)
	if spy.Prepared != got.Valid {
		t.Errorf("%d entries prepared, %d valid", spy.Prepared, got.Valid)
	}
	sum := 0
	for _, n := range spy.Batches {
		if n < 1 || n > 7 {
			t.Errorf("batch of %d", n)
		}
		sum += n
	}
	wantEntries, gotEntries := tenantEntries(t, s, "batch"), tenantEntries(t, s, "sorted")
	if !reflect.DeepEqual(gotEntries, wantEntries) || len(gotEntries) != got.Added+2 {
		t.Errorf("sorted import stored %d entries, batch import %d (added %d)", len(gotEntries), len(wantEntries), got.Added)
	}
	// One record per entry of the file, which names the two there before.
	if sum != len(gotEntries) || len(spy.Batches) < 10 {
		t.Errorf("batches %v (%d records) for %d entries", spy.Batches, sum, len(gotEntries))
	}
	// The first row of an entry is kept (rows 37, 38 and 637 name one,
	// with channels ch37, again and ch637), and an entry there before is
	// kept as it was.
	for _, w := range []struct {
		addr, list string
		reason     Reason
		channel    string
	}{
		{"user37@example.com", "news", Manual, "ch37"},
		{"user1@example.com", "news", Unsubscribe, "pre"},
		{"user2@example.com", "promo", Manual, "pre"},
	} {
		es, err := s.Lookup(ctx, "sorted", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(es, func(e Entry) bool { return e.List == w.list && e.Reason == w.reason })
		if i < 0 || es[i].Channel != w.channel {
			t.Errorf("%s %s %s: %+v; want channel %s", w.addr, w.list, w.reason, es, w.channel)
		}
	}

	// Again: every row exists, counted as such, and nothing changes.
	again := importString(t, spy, "sorted", in, ImportOptions{TempDir: dir})
	if again.Valid != got.Valid || again.Added != 0 || again.Existing != got.Valid {
		t.Errorf("re-import: %+v", again)
	}
	if !reflect.DeepEqual(tenantEntries(t, s, "sorted"), gotEntries) {
		t.Error("the re-import changed the entries")
	}
	checkTempDirClean(t, dir)
}

// TestImportCSVSortedSmall: an import that fits in one run makes no file
// and is one batch; a dry run prepares nothing.
func TestImportCSVSortedSmall(t *testing.T) {
	s := openCSVStore(t)
	dir := t.TempDir()
	spy := &SortedSpy{Service: s}
	spy.During = func() {
		if n := openIn(t, dir); n != 0 {
			t.Errorf("%d temporary files for a small import", n)
		}
	}
	in := sortedCSV(300)
	rep := importString(t, spy, "acme", in, ImportOptions{TempDir: dir})
	if len(spy.Batches) != 1 || spy.Batches[0] != rep.Added {
		t.Errorf("batches %v for %+v", spy.Batches, rep)
	}
	spy = &SortedSpy{Service: s}
	dry := importString(t, spy, "acme", in, ImportOptions{DryRun: true, TempDir: dir})
	if spy.Prepared != 0 || len(spy.Batches) != 0 || dry.Valid != rep.Valid || dry.Rejected != rep.Rejected {
		t.Errorf("dry run: prepared %d, batches %v, report %+v", spy.Prepared, spy.Batches, dry)
	}
	checkTempDirClean(t, dir)
}

// TestImportCSVSortedErrors: a failed batch, ctx's end and unreadable
// input in a sorted import, with the temporary files gone after each.
func TestImportCSVSortedErrors(t *testing.T) {
	setSortSizes(t, 1024, 2, 10)
	s := openCSVStore(t)
	dir := t.TempDir()
	in := bulkCSV(200)

	// A failed write stops the import after the batches before it.
	spy := &SortedSpy{Service: s, Fail: 3}
	rep, err := ImportCSV(context.Background(), spy, "acme", strings.NewReader(in), ImportOptions{TempDir: dir})
	if err == nil || !strings.Contains(err.Error(), "batch 3") || !strings.Contains(err.Error(), "lines 2 to 201") || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("err = %v", err)
	}
	if rep.Rows != 20 || rep.Valid != 20 || rep.Added != 20 || len(spy.Batches) != 3 {
		t.Errorf("report after a failed write: %+v, batches %v", rep, spy.Batches)
	}
	if n := len(tenantEntries(t, s, "acme")); n != 20 {
		t.Errorf("%d entries stored", n)
	}
	checkTempDirClean(t, dir)

	// ctx's end while the rows are read writes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	spy = &SortedSpy{Service: s}
	r := io.MultiReader(strings.NewReader(in), readerFunc(func([]byte) (int, error) {
		cancel()
		return 0, io.EOF
	}), strings.NewReader(bulkCSV(ImportBatch + 1)[len("address,list,reason\n"):]))
	rep, err = ImportCSV(ctx, spy, "other", r, ImportOptions{TempDir: dir})
	if !errors.Is(err, context.Canceled) || len(spy.Batches) != 0 || rep.Valid != 0 {
		t.Errorf("cancelled: %v, report %+v, batches %v", err, rep, spy.Batches)
	}
	checkTempDirClean(t, dir)

	// Unreadable input: the rows before it are imported.
	spy = &SortedSpy{Service: s}
	r = io.MultiReader(strings.NewReader(in), readerFunc(func([]byte) (int, error) {
		return 0, errors.New("connection reset")
	}))
	rep, err = ImportCSV(context.Background(), spy, "third", r, ImportOptions{TempDir: dir})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("err = %v", err)
	}
	if rep.Rows != 200 || rep.Added != 200 || len(spy.Batches) != 20 {
		t.Errorf("report after unreadable input: %+v, batches %v", rep, spy.Batches)
	}
	checkTempDirClean(t, dir)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestNeutraliseRoundTrip: every string comes back from Neutralise and
// Unneutralise as it was, quotes included.
func TestNeutraliseRoundTrip(t *testing.T) {
	for _, s := range []string{"=x@example.com", "'=x@example.com", "''=x", "'x@example.com", "-", "'", "", "plain"} {
		if got := Unneutralise(Neutralise(s)); got != s {
			t.Errorf("%q came back as %q", s, got)
		}
		if n := Neutralise(s); n != "" && FormulaStart(n[0]) {
			t.Errorf("%q is exported as %q, a formula", s, n)
		}
	}
}
