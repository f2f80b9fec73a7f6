package suppression

// CSV import and export of a tenant's suppression list: what the admin API's
// POST .../suppressions/import and GET .../suppressions/export, and the CLI's
// `heed suppress import|export`, call (contract.md). Both stream: memory is
// bounded whatever the size of the file or of the list.
//
// The columns, in both directions:
//
//	address     the mailbox (normalised on import, see Normalize)
//	list        a list id, or "*" for every list (All); import default "*"
//	reason      unsubscribe, import, manual, bounce or complaint; import
//	            default "import"
//	channel     how the suppression came in; import default "import"
//	created_at  RFC 3339; import default: the store's clock
//	message_id  the message that led to it; import default none
//
// An import names its columns in a header row; only address is required, so
// a list carried over from another provider is one column, and an export
// imports back as it is (a restore keeps each entry's reason, date and
// channel, which are the record of the opt-out).

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Importer is what ImportCSV writes to: Service.Import, whose rules (one
// transaction per call, an entry that exists is not added again) the
// report's counts follow.
type Importer interface {
	Import(ctx context.Context, entries []Entry) (added int, err error)
}

var _ Importer = (*Service)(nil)

// sortedImporter is an Importer that ImportCSV can feed in key order
// (Service): the entries are turned into their keys and values as they
// are read, sorted outside the store, and written in batches of adjacent
// keys, so that a large import appends to the B+tree instead of rewriting
// a leaf page per row.
type sortedImporter interface {
	Importer
	prepareKV(e Entry) (k, v []byte, err error)
	importSorted(ctx context.Context, recs []kv) (added int, err error)
}

var _ sortedImporter = (*Service)(nil)

// Import limits.
const (
	// MaxCSVLine is the longest physical line of an import, in bytes
	// without its line break. A longer line is rejected as a row, and the
	// import goes on at the next line.
	MaxCSVLine = 4096
	// maxCSVRun is how far the CSV reader may read past the end of the
	// last record before it returns the next one. Only a quoted field left
	// open (a stray '"') gets near it, swallowing the lines after it; the
	// import stops there rather than hold the rest of the file in memory.
	maxCSVRun = 1 << 20
	// DefaultMaxErrors is ImportOptions.MaxErrors when it is zero.
	DefaultMaxErrors = 1000
	// importBatch is the number of entries of one Importer.Import call,
	// hence of one transaction.
	importBatch = 10000
	// maxReportedAddress is how much of a rejected address a RowError
	// repeats.
	maxReportedAddress = 100
)

// The sorted import's sizes: variables so that tests can make them small.
var (
	// sortRunBytes bounds the memory of the rows an import holds before it
	// sorts them and writes them to a temporary file (a run).
	sortRunBytes = 32 << 20
	// sortFanIn is how many runs of one size are merged into one, bounding
	// the runs (open files, read buffers) of the final merge: about
	// sortFanIn-1 per 64-fold of size.
	sortFanIn = 64
	// sortedBatch is the number of entries of one importSorted call, hence
	// of one transaction.
	sortedBatch = 50000
)

// ImportOptions tune ImportCSV. The zero value imports for real, accepts
// any well-formed list id and keeps up to DefaultMaxErrors row errors.
type ImportOptions struct {
	// CheckList is called for every list id of the file other than All
	// (once per row: make it cheap, e.g. a map of the tenant's lists); an
	// error rejects the row, with the error's text as the reason. Nil
	// accepts every well-formed id.
	CheckList func(id string) error
	// DryRun validates and counts every row and writes nothing. Valid then
	// counts the rows that would be imported; Added and Existing stay 0
	// (telling them apart takes a lookup per row).
	DryRun bool
	// MaxErrors is how many row errors the report keeps; the others are
	// counted in Rejected and the report says Truncated. Zero means
	// DefaultMaxErrors, a negative value keeps none.
	MaxErrors int
	// TempDir is where an import into a Service that does not fit in
	// memory keeps its sorted runs (about as many bytes as the valid rows
	// of the CSV); empty means os.TempDir(). The files are removed before
	// ImportCSV returns, and where the system allows it (not Windows) they
	// have no name from the start, so that not even a crash leaves them.
	TempDir string
}

// ImportReport is the outcome of ImportCSV, row by row.
//
// Rows is the number of data rows read (the header is not one): Rows ==
// Valid + Rejected, and when not DryRun, Valid == Added + Existing. When
// ImportCSV returns an error, the report covers the rows read and settled
// before it: the rows before unreadable input are imported, rows of a
// batch whose write failed (or that ctx's end stopped) are in none of the
// counts, and rows after the error were not read. Into a Service, the
// rows are written only once the whole file is read (see ImportCSV), so an
// error while reading the file (other than unreadable input) writes none,
// and a batch is a range of keys, holding rows from all over the file.
type ImportReport struct {
	Rows int `json:"rows"`
	// Valid rows passed every check (and were written unless DryRun).
	Valid int `json:"valid"`
	// Added entries were not in the store before.
	Added int `json:"added"`
	// Existing rows named an entry (tenant, address, list, reason) that was
	// there already, or that an earlier row of the file added.
	Existing int `json:"existing"`
	// Rejected rows were not imported; the first MaxErrors say why.
	Rejected  int        `json:"rejected"`
	Errors    []RowError `json:"errors"`
	Truncated bool       `json:"truncated"`
}

// RowError says why one row was rejected.
type RowError struct {
	// Line is the CSV line of the row's start: the header is line 1 (when
	// the file does not open with blank lines) and a quoted field may hold
	// line breaks, so a row can span lines.
	Line int `json:"line"`
	// Address is the row's address cell as given, cut to 100 bytes.
	Address string `json:"address"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
}

// columns of the CSV, in the export's order.
const (
	colAddress = iota
	colList
	colReason
	colChannel
	colCreated
	colMessageID
	numCols
)

var colNames = [numCols]string{"address", "list", "reason", "channel", "created_at", "message_id"}

// ImportCSV reads a CSV of suppressions from r and adds them to tenant's
// list through imp, in transactions of up to 10,000 entries, holding no more
// than one batch in memory.
//
// Into a Service (and not DryRun) it does better: the store's keys hold
// a keyed hash of the address, so the rows of any order of the file land
// all over the tenant's keys, and a batch of them rewrites about one page
// of the database per row. Instead it turns each valid row into its key and
// value as it reads, sorts them in memory up to 32 MiB at a time (a run),
// writing each run but the last to a temporary file in
// ImportOptions.TempDir, then merges the runs in key order into
// transactions of up to 50,000 entries, which append to the B+tree. Memory
// stays bounded (runs are merged 64 at a time into bigger runs as they
// pile up); an import that fits in one run touches no file. The first row
// of an entry (tenant, address, list, reason) is the one imported, as in
// file order. The price is that nothing is written until the file is read
// through, and that a failed write can only name its batch, not the lines
// of its rows: a batch holds rows from all over the file.
//
// The first non-blank row is the header: column names (see the package's
// columns: address is required, the others optional) in any order and any
// case, surrounded by spaces or not; a UTF-8 byte order mark before it is
// skipped, and lines may end in CRLF or LF. A header that names an unknown
// column, a column twice or no address column fails the import before
// anything is written: a misspelt "reson" must not drop the reasons
// silently.
//
// Each row is checked on its own and rejected, with its line, when it is
// malformed CSV (the reader goes on at the next line), has a line longer
// than MaxCSVLine bytes or another number of fields than the header, an
// address that does not normalise or is empty (an erased entry of an export
// cannot be imported: only its keyed hash is left), a malformed list id or
// one CheckList refuses, an unknown reason, a bounce or complaint with a
// list other than "*" (they are about the mailbox and cover every list:
// the store would widen the scope, and the file should say so itself), a
// channel over 64 bytes, a message id over 128, or a created_at that is not
// RFC 3339. Rows that pass are imported; duplicates, in the file or of
// entries already there, are counted in Existing.
//
// A cell of channel, message_id or address that starts with a single quote
// followed by = + - @ tab or CR loses the quote: it is the mark ExportCSV
// (and other exporters) put against spreadsheet formula injection. So an
// export imports back as it was; the cost is that a mailbox whose name
// really starts with, say, "'-" is imported without its quote.
//
// The import stops with an error (wrapping ErrInvalid when it is about the
// input) on a bad header, an unreadable input, a quoted field left open over
// more than 1 MiB, a write error or ctx's end (checked between batches);
// the report then says what was done before. Temporary files are removed
// whatever happens.
func ImportCSV(ctx context.Context, imp Importer, tenant string, r io.Reader, o ImportOptions) (ImportReport, error) {
	var rep ImportReport
	if err := checkTenant(tenant); err != nil {
		return rep, err
	}
	if imp == nil && !o.DryRun {
		return rep, errors.New("suppression: ImportCSV without an Importer")
	}
	switch {
	case o.MaxErrors == 0:
		o.MaxErrors = DefaultMaxErrors
	case o.MaxErrors < 0:
		o.MaxErrors = 0
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xEF\xBB\xBF")) {
		br.Discard(3)
	}
	lim := &lineLimiter{r: br, max: MaxCSVLine, line: 1, stop: maxCSVRun, limit: maxCSVRun}
	cr := csv.NewReader(lim)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.LazyQuotes = false

	im := importer{ctx: ctx, imp: imp, tenant: tenant, o: o, rep: &rep, cr: cr, lim: lim}
	if si, ok := imp.(sortedImporter); ok && !o.DryRun {
		im.srt = &sorter{ctx: ctx, si: si, dir: o.TempDir, rep: &rep}
		defer im.srt.close()
	}
	if err := im.header(); err != nil {
		return rep, err
	}
	err := im.rows()
	return rep, err
}

// importer is the state of one ImportCSV.
type importer struct {
	ctx    context.Context
	imp    Importer
	tenant string
	o      ImportOptions
	rep    *ImportReport
	cr     *csv.Reader
	lim    *lineLimiter
	idx    [numCols]int // column of each name, -1 when absent
	nf     int          // fields of the header
	batch  []Entry
	srt    *sorter // the sorted import, or nil for Import by batches
	first  int     // line of the batch's first row
	last   int     // line of the batch's last row
	read   int     // rows read since the last context check
	cut    bool    // the record just read holds a line that was cut
}

// next reads one record and moves the limiter's window past it. A
// *csv.ParseError leaves the reader able to go on; other errors do not.
func (im *importer) next() ([]string, error) {
	rec, err := im.cr.Read()
	off := im.cr.InputOffset()
	im.lim.consumed(off)
	im.cut = im.lim.cutIn(off)
	if err != nil && !errors.Is(err, io.EOF) {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			if errors.Is(err, errRunaway) {
				return nil, invalid("line %d: a quoted field runs on for more than %d bytes (is a '\"' missing?)", im.lim.line, maxCSVRun)
			}
			return nil, fmt.Errorf("reading line %d: %w", im.lim.line, err)
		}
	}
	return rec, err
}

func (im *importer) header() error {
	rec, err := im.next()
	if errors.Is(err, io.EOF) {
		return invalid("the CSV is empty: its first row must be a header naming the columns (address, and optionally list, reason, channel, created_at, message_id)")
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return invalid("header, line %d: %v", pe.StartLine, pe.Err)
	}
	if err != nil {
		return err
	}
	line, _ := im.cr.FieldPos(0)
	if im.cut {
		return invalid("header, line %d: longer than %d bytes", line, MaxCSVLine)
	}
	for i := range im.idx {
		im.idx[i] = -1
	}
	var unknown []string
	for i, name := range rec {
		n := strings.ToLower(strings.TrimSpace(name))
		c := -1
		for j, cn := range colNames {
			if n == cn {
				c = j
			}
		}
		switch {
		case c < 0:
			unknown = append(unknown, fmt.Sprintf("%q", truncate(name, 40)))
		case im.idx[c] >= 0:
			return invalid("header, line %d: column %q appears twice", line, n)
		default:
			im.idx[c] = i
		}
	}
	if len(unknown) > 0 {
		return invalid("header, line %d: unknown column %s: the columns are %s", line,
			strings.Join(unknown, ", "), strings.Join(colNames[:], ", "))
	}
	if im.idx[colAddress] < 0 {
		return invalid("header, line %d: no address column (the first row must name the columns)", line)
	}
	im.nf = len(rec)
	return nil
}

func (im *importer) rows() error {
	for {
		rec, err := im.next()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			why := "malformed CSV: " + pe.Err.Error()
			if im.cut { // what was cut may have closed a quote
				why = fmt.Sprintf("line longer than %d bytes", MaxCSVLine)
			}
			im.reject(pe.StartLine, "", why)
		} else if err != nil {
			// The rows before the bad input are good: keep them, so the
			// report's counts say what the store holds.
			if ferr := im.flush(); ferr != nil {
				return errors.Join(err, ferr)
			}
			return err
		} else {
			line, _ := im.cr.FieldPos(0)
			e, addr, why := im.entry(rec)
			if im.cut {
				why = fmt.Sprintf("line longer than %d bytes", MaxCSVLine)
			}
			if why != "" {
				im.reject(line, addr, why)
			} else if err := im.add(line, e); err != nil {
				return err
			}
		}
		if im.read++; im.read == importBatch {
			im.read = 0
			if err := im.ctx.Err(); err != nil {
				return err
			}
		}
	}
	return im.flush()
}

// entry checks one record and returns its entry, or the address cell as
// given and why the row is rejected.
func (im *importer) entry(rec []string) (e Entry, addr, why string) {
	if len(rec) != im.nf {
		a := ""
		if im.idx[colAddress] < len(rec) {
			a = rec[im.idx[colAddress]]
		}
		return e, a, fmt.Sprintf("%d fields, the header has %d", len(rec), im.nf)
	}
	cell := func(c int) string {
		if im.idx[c] < 0 {
			return ""
		}
		return rec[im.idx[c]]
	}
	addr = cell(colAddress)
	given := unneutralise(addr)
	if strings.TrimSpace(given) == "" {
		return e, addr, "address is empty (an erased entry cannot be imported)"
	}
	norm, err := Normalize(given)
	if err != nil {
		return e, addr, reasonText(err)
	}
	e = Entry{Tenant: im.tenant, Address: norm, List: All, Reason: Import, Channel: "import"}
	if l := strings.TrimSpace(cell(colList)); l != "" && l != All {
		if err := checkScope(l); err != nil {
			return e, addr, reasonText(err)
		}
		if im.o.CheckList != nil {
			if err := im.o.CheckList(l); err != nil {
				return e, addr, "list: " + err.Error()
			}
		}
		e.List = l
	}
	if rs := strings.ToLower(strings.TrimSpace(cell(colReason))); rs != "" {
		r, err := ParseReason(rs)
		if err != nil {
			return e, addr, reasonText(err)
		}
		e.Reason = r
	}
	if (e.Reason == Bounce || e.Reason == Complaint) && e.List != All {
		return e, addr, fmt.Sprintf("a %s covers every list: give list %q or none", e.Reason, All)
	}
	if ch := unneutralise(strings.TrimSpace(cell(colChannel))); ch != "" {
		if len(ch) > 64 {
			return e, addr, "channel longer than 64 bytes"
		}
		e.Channel = ch
	}
	if id := unneutralise(strings.TrimSpace(cell(colMessageID))); id != "" {
		if len(id) > 128 {
			return e, addr, "message id longer than 128 bytes"
		}
		e.MessageID = id
	}
	if ts := strings.TrimSpace(cell(colCreated)); ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return e, addr, "created_at is not an RFC 3339 time (2006-01-02T15:04:05Z)"
		}
		e.Time = t.UTC()
	}
	return e, addr, ""
}

// reasonText is err's text without the "invalid: " of ErrInvalid, which
// every row error would repeat.
func reasonText(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

func (im *importer) reject(line int, addr, why string) {
	im.rep.Rows++
	im.rep.Rejected++
	if len(im.rep.Errors) >= im.o.MaxErrors {
		im.rep.Truncated = true
		return
	}
	im.rep.Errors = append(im.rep.Errors, RowError{Line: line, Address: truncate(addr, maxReportedAddress), Reason: why})
}

func (im *importer) add(line int, e Entry) error {
	if im.o.DryRun {
		im.rep.Rows++
		im.rep.Valid++
		return nil
	}
	if im.srt != nil {
		return im.srt.add(line, e)
	}
	if len(im.batch) == 0 {
		im.batch = make([]Entry, 0, importBatch)
		im.first = line
	}
	im.batch = append(im.batch, e)
	im.last = line
	if len(im.batch) == importBatch {
		return im.flush()
	}
	return nil
}

// flush writes the batch in one Import, or, for a sorted import (which it
// ends), every row.
func (im *importer) flush() error {
	if im.srt != nil {
		return im.srt.finish()
	}
	if len(im.batch) == 0 {
		return nil
	}
	if err := im.ctx.Err(); err != nil {
		return err
	}
	added, err := im.imp.Import(im.ctx, im.batch)
	if err != nil {
		return fmt.Errorf("importing the rows of lines %d to %d: %w", im.first, im.last, err)
	}
	n := len(im.batch)
	im.rep.Rows += n
	im.rep.Valid += n
	im.rep.Added += added
	im.rep.Existing += n - added
	clear(im.batch) // let the records' strings go
	im.batch = im.batch[:0]
	return nil
}

// sorter is the sorted import of one ImportCSV into a sortedImporter: an
// external merge sort of the rows' keys and values, then writes in key
// order.
type sorter struct {
	ctx  context.Context
	si   sortedImporter
	dir  string
	rep  *ImportReport
	done bool

	// The rows in memory: their keys and values one after the other in
	// arena, in file order.
	arena    []byte
	recs     []memRec
	runFirst int // line of the first row in memory
	first    int // line of the first valid row, 0 before it
	last     int // line of the last valid row

	runs  []*run // written, in file order (the order ties keep)
	files []*run // every run made, for close
	w     *bufio.Writer
	batch sortBatch
}

// memRec is one record in a sorter's or a batch's arena.
type memRec struct {
	off        uint32
	klen, vlen uint16
}

// run is a temporary file of records sorted by key: for each, uvarints
// key length, value length and the number of duplicates it stands for
// (rows of the same key after it in the file), then the key and the value.
type run struct {
	f     *os.File
	name  string // to remove; "" once removed
	level int    // 0 for a run of rows, n+1 for a merge of runs of level n
}

// maxRecField bounds a key or value read back from a run: what a
// memRec can hold (keys and values are far shorter).
const maxRecField = math.MaxUint16

func (s *sorter) add(line int, e Entry) error {
	k, v, err := s.si.prepareKV(e)
	if err != nil {
		return fmt.Errorf("importing the row of line %d: %w", line, err)
	}
	if len(k) > maxRecField || len(v) > maxRecField {
		return fmt.Errorf("importing the row of line %d: entry too long", line)
	}
	if len(s.recs) > 0 && len(s.arena)+len(k)+len(v)+memRecSize*(len(s.recs)+1) > sortRunBytes {
		if err := s.spill(); err != nil {
			return err
		}
	}
	if s.arena == nil {
		s.arena = make([]byte, 0, min(sortRunBytes, 1<<20))
	}
	if len(s.recs) == 0 {
		s.runFirst = line
	}
	if s.first == 0 {
		s.first = line
	}
	s.last = line
	off := len(s.arena)
	s.arena = append(append(s.arena, k...), v...)
	s.recs = append(s.recs, memRec{off: uint32(off), klen: uint16(len(k)), vlen: uint16(len(v))})
	return nil
}

// memRecSize is the size of a memRec, counted against sortRunBytes.
const memRecSize = 8

// sortMem sorts the records in memory by key, then by position, so that
// the first row of a key comes first.
func (s *sorter) sortMem() {
	a := s.arena
	slices.SortFunc(s.recs, func(x, y memRec) int {
		if c := bytes.Compare(a[x.off:x.off+uint32(x.klen)], a[y.off:y.off+uint32(y.klen)]); c != 0 {
			return c
		}
		return cmp.Compare(x.off, y.off)
	})
}

// spill writes the records in memory to a new run.
func (s *sorter) spill() error {
	s.sortMem()
	r, err := s.newRun(0)
	if err == nil {
		err = s.writeRun(r, &memSource{arena: s.arena, recs: s.recs})
	}
	if err != nil {
		return fmt.Errorf("writing the rows of lines %d to %d, sorted, to a temporary file: %w", s.runFirst, s.last, err)
	}
	s.arena = s.arena[:0]
	s.recs = s.recs[:0]
	s.runs = append(s.runs, r)
	return s.compact()
}

// compact merges the last sortFanIn runs into one while they are of one
// level. Runs are made in file order and merged only with their
// neighbours, so the runs stay in file order, and their levels decrease.
func (s *sorter) compact() error {
	for n := len(s.runs); n >= sortFanIn; n = len(s.runs) {
		tail := s.runs[n-sortFanIn:]
		if tail[0].level != tail[len(tail)-1].level {
			return nil
		}
		r, err := s.newRun(tail[0].level + 1)
		if err == nil {
			var m *mergeSource
			if m, err = newMergeSource(runSources(tail)); err == nil {
				err = s.writeRun(r, m)
			}
		}
		if err != nil {
			return fmt.Errorf("merging sorted rows into a temporary file: %w", err)
		}
		for _, t := range tail {
			t.release()
		}
		s.runs = append(s.runs[:n-sortFanIn], r)
	}
	return nil
}

func (s *sorter) newRun(level int) (*run, error) {
	f, err := os.CreateTemp(s.dir, "heed-import-*.run")
	if err != nil {
		return nil, err
	}
	r := &run{f: f, name: f.Name(), level: level}
	if os.Remove(r.name) == nil { // the open file lives on, nameless
		r.name = ""
	}
	s.files = append(s.files, r)
	return r, nil
}

// release closes r and removes its file.
func (r *run) release() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	if r.name != "" {
		os.Remove(r.name)
		r.name = ""
	}
}

// close releases every run.
func (s *sorter) close() {
	for _, r := range s.files {
		r.release()
	}
	s.files, s.runs = nil, nil
}

// writeRun writes src to r and rewinds r for reading.
func (s *sorter) writeRun(r *run, src source) error {
	if s.w == nil {
		s.w = bufio.NewWriterSize(r.f, 256<<10)
	} else {
		s.w.Reset(r.f)
	}
	var hdr [3 * binary.MaxVarintLen64]byte
	for i := 1; ; i++ {
		k, v, dups, ok, err := src.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if i%importBatch == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		n := binary.PutUvarint(hdr[:], uint64(len(k)))
		n += binary.PutUvarint(hdr[n:], uint64(len(v)))
		n += binary.PutUvarint(hdr[n:], uint64(dups))
		s.w.Write(hdr[:n])
		s.w.Write(k)
		s.w.Write(v) // errors stay in s.w until Flush
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	s.w.Reset(nil)
	_, err := r.f.Seek(0, io.SeekStart)
	return err
}

// finish merges the runs and the rows in memory and writes them in key
// order, in batches of sortedBatch entries.
func (s *sorter) finish() error {
	if s.done {
		return nil
	}
	s.done = true
	defer s.close()
	srcs := runSources(s.runs)
	if len(s.recs) > 0 {
		s.sortMem()
		srcs = append(srcs, &memSource{arena: s.arena, recs: s.recs})
	}
	var src source
	switch len(srcs) {
	case 0:
		return nil
	case 1:
		src = srcs[0]
	default:
		m, err := newMergeSource(srcs)
		if err != nil {
			return fmt.Errorf("reading sorted rows back from a temporary file: %w", err)
		}
		src = m
	}
	b := &s.batch
	for {
		k, v, dups, ok, err := src.next()
		if err != nil {
			return fmt.Errorf("reading sorted rows back from a temporary file: %w", err)
		}
		if !ok {
			break
		}
		if len(b.recs) == sortedBatch {
			if err := s.flushBatch(); err != nil {
				return err
			}
		}
		b.add(k, v, dups)
	}
	return s.flushBatch()
}

// sortBatch is the entries of one importSorted call, copied out of their
// sources.
type sortBatch struct {
	arena []byte
	recs  []memRec
	kvs   []kv
	dups  int // rows of the batch's keys after the first
	n     int // batches written
}

func (b *sortBatch) add(k, v []byte, dups int) {
	off := len(b.arena)
	b.arena = append(append(b.arena, k...), v...)
	b.recs = append(b.recs, memRec{off: uint32(off), klen: uint16(len(k)), vlen: uint16(len(v))})
	b.dups += dups
}

// flushBatch writes the batch in one importSorted and counts its rows.
func (s *sorter) flushBatch() error {
	b := &s.batch
	if len(b.recs) == 0 {
		return nil
	}
	if err := s.ctx.Err(); err != nil {
		return err
	}
	b.kvs = b.kvs[:0]
	for _, r := range b.recs {
		k := b.arena[r.off : r.off+uint32(r.klen)]
		b.kvs = append(b.kvs, kv{k: k, v: b.arena[r.off+uint32(r.klen) : r.off+uint32(r.klen)+uint32(r.vlen)]})
	}
	b.n++
	added, err := s.si.importSorted(s.ctx, b.kvs)
	if err != nil {
		return fmt.Errorf("importing batch %d of the rows of lines %d to %d sorted by key (a batch holds rows from anywhere in them): %w",
			b.n, s.first, s.last, err)
	}
	n := len(b.recs) + b.dups
	s.rep.Rows += n
	s.rep.Valid += n
	s.rep.Added += added
	s.rep.Existing += n - added
	clear(b.kvs)
	b.arena, b.recs, b.kvs, b.dups = b.arena[:0], b.recs[:0], b.kvs[:0], 0
	return nil
}

// source yields records in increasing key order, each key once: the
// record of the first row of that key and how many rows of it followed
// (dups). k and v stay valid until the next call.
type source interface {
	next() (k, v []byte, dups int, ok bool, err error)
}

// memSource yields a sorter's records once sorted.
type memSource struct {
	arena []byte
	recs  []memRec
	i     int
}

func (m *memSource) key(r memRec) []byte { return m.arena[r.off : r.off+uint32(r.klen)] }

func (m *memSource) next() (k, v []byte, dups int, ok bool, err error) {
	if m.i == len(m.recs) {
		return nil, nil, 0, false, nil
	}
	r := m.recs[m.i]
	k = m.key(r)
	m.i++
	for m.i < len(m.recs) && bytes.Equal(m.key(m.recs[m.i]), k) {
		dups++
		m.i++
	}
	return k, m.arena[r.off+uint32(r.klen) : r.off+uint32(r.klen)+uint32(r.vlen)], dups, true, nil
}

// fileSource reads a run.
type fileSource struct {
	r   *bufio.Reader
	buf []byte
}

func runSources(runs []*run) []source {
	srcs := make([]source, 0, len(runs)+1)
	for _, r := range runs {
		srcs = append(srcs, &fileSource{r: bufio.NewReaderSize(r.f, 64<<10)})
	}
	return srcs
}

func (f *fileSource) next() (k, v []byte, dups int, ok bool, err error) {
	kl, err := binary.ReadUvarint(f.r)
	if err == io.EOF {
		return nil, nil, 0, false, nil
	}
	var vl, d uint64
	if err == nil {
		vl, err = binary.ReadUvarint(f.r)
	}
	if err == nil {
		d, err = binary.ReadUvarint(f.r)
	}
	if err == nil && (kl > maxRecField || vl > maxRecField || d > math.MaxInt32) {
		err = errors.New("corrupt record")
	}
	if err == nil {
		n := int(kl + vl)
		if cap(f.buf) < n {
			f.buf = make([]byte, n, max(n, 512))
		}
		f.buf = f.buf[:n]
		_, err = io.ReadFull(f.r, f.buf)
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, 0, false, err
	}
	return f.buf[:kl], f.buf[kl:], int(d), true, nil
}

// mergeSource merges sources into one, the first (in the order given) of
// equal keys standing for the others.
type mergeSource struct {
	h    cursorHeap
	last *cursor // the cursor of the record returned last, to move on
}

type cursor struct {
	src  source
	ord  int
	k, v []byte
	dups int
}

func (c *cursor) advance() (ok bool, err error) {
	c.k, c.v, c.dups, ok, err = c.src.next()
	return ok, err
}

type cursorHeap []*cursor

func (h cursorHeap) Len() int { return len(h) }
func (h cursorHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].k, h[j].k); c != 0 {
		return c < 0
	}
	return h[i].ord < h[j].ord
}
func (h cursorHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)   { *h = append(*h, x.(*cursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}

func newMergeSource(srcs []source) (*mergeSource, error) {
	m := &mergeSource{h: make(cursorHeap, 0, len(srcs))}
	for i, src := range srcs {
		c := &cursor{src: src, ord: i}
		ok, err := c.advance()
		if err != nil {
			return nil, err
		}
		if ok {
			m.h = append(m.h, c)
		}
	}
	heap.Init(&m.h)
	return m, nil
}

func (m *mergeSource) next() (k, v []byte, dups int, ok bool, err error) {
	if c := m.last; c != nil {
		m.last = nil
		ok, err := c.advance()
		if err != nil {
			return nil, nil, 0, false, err
		}
		if ok {
			heap.Push(&m.h, c)
		}
	}
	if m.h.Len() == 0 {
		return nil, nil, 0, false, nil
	}
	c := heap.Pop(&m.h).(*cursor)
	dups = c.dups
	for m.h.Len() > 0 && bytes.Equal(m.h[0].k, c.k) {
		d := m.h[0]
		dups += 1 + d.dups
		ok, err := d.advance()
		if err != nil {
			return nil, nil, 0, false, err
		}
		if ok {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
		}
	}
	m.last = c
	return c.k, c.v, dups, true, nil
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// formulaStart says whether a spreadsheet would take a cell starting with c
// for a formula (OWASP, CSV injection).
func formulaStart(c byte) bool {
	switch c {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// neutralise makes s inert in a spreadsheet: a leading single quote when
// it would start a formula, and when it starts with a quote before such a
// character (so that unneutralise gives back '=x@example.com as it was).
func neutralise(s string) string {
	if t := strings.TrimLeft(s, "'"); t != "" && formulaStart(t[0]) {
		return "'" + s
	}
	return s
}

// unneutralise undoes neutralise: one quote off a string of quotes before
// a formula character.
func unneutralise(s string) string {
	if t := strings.TrimLeft(s, "'"); len(t) < len(s) && t != "" && formulaStart(t[0]) {
		return s[1:]
	}
	return s
}

var errRunaway = errors.New("record runs on too far")

// lineLimiter passes its input on to the CSV reader with every physical
// line cut to max bytes (the rest up to the line break is dropped, and the
// offset of the cut recorded, so that the row holding it is rejected), and
// fails with errRunaway when the reader asks for more than stop bytes past
// the end of the last record it returned. Together they bound the memory
// of one record, which encoding/csv does not.
type lineLimiter struct {
	r    *bufio.Reader
	max  int
	stop int64

	col      int   // bytes of the current line passed on
	skipping bool  // dropping the rest of a line that was cut
	out      int64 // bytes passed on
	limit    int64 // out may not pass it
	line     int   // the line being read, from 1
	err      error

	// cuts are the offsets (in out) of the cuts not yet behind the reader:
	// a cut line ends at its offset, so the first record ending at or
	// after it holds it.
	cuts []int64
}

// consumed tells the limiter that the reader has returned every record
// ending before off.
func (l *lineLimiter) consumed(off int64) {
	l.limit = off + l.stop
}

// cutIn says whether a line was cut at or before off, and forgets those
// cuts.
func (l *lineLimiter) cutIn(off int64) bool {
	found := false
	i := 0
	for i < len(l.cuts) && l.cuts[i] <= off {
		found = true
		i++
	}
	l.cuts = l.cuts[:copy(l.cuts, l.cuts[i:])]
	return found
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n := 0
	for n < len(p) {
		if n > 0 && l.r.Buffered() == 0 {
			break // do not block for more while holding data
		}
		if _, err := l.r.Peek(1); err != nil {
			if n > 0 {
				break
			}
			l.err = err
			return 0, err
		}
		avail, _ := l.r.Peek(l.r.Buffered())
		if l.skipping {
			i := bytes.IndexByte(avail, '\n')
			if i < 0 {
				l.r.Discard(len(avail))
				continue
			}
			l.r.Discard(i) // the line break is passed on below
			l.skipping = false
			continue
		}
		if l.out >= l.limit {
			l.err = errRunaway
			if n > 0 {
				break
			}
			return 0, l.err
		}
		chunk := avail[:min(len(avail), len(p)-n, int(l.limit-l.out))]
		nl := bytes.IndexByte(chunk, '\n')
		if nl >= 0 {
			chunk = chunk[:nl+1]
		}
		text := len(chunk)
		if nl >= 0 {
			text--
		}
		if l.col+text > l.max {
			k := l.max - l.col
			copy(p[n:], chunk[:k])
			n += k
			l.out += int64(k)
			l.r.Discard(k)
			l.cuts = append(l.cuts, l.out)
			l.col = 0
			l.skipping = true
			continue
		}
		copy(p[n:], chunk)
		n += len(chunk)
		l.out += int64(len(chunk))
		l.r.Discard(len(chunk))
		if nl >= 0 {
			l.col = 0
			l.line++
		} else {
			l.col += text
		}
	}
	return n, nil
}

// ExportOptions filter ExportCSV. The zero value exports every entry.
type ExportOptions struct {
	// List keeps the entries of one scope: a list id, or All for those
	// that cover every list. Empty keeps all scopes.
	List string
	// Reason keeps the entries of one reason; empty keeps all.
	Reason Reason
	// Since keeps the entries created at or after it; zero keeps all.
	Since time.Time
}

// Keeps says whether e passes the Reason and Since filters (List is the
// store's to apply, as it reads).
func (o ExportOptions) Keeps(e Entry) bool {
	return (o.Reason == "" || e.Reason == o.Reason) && !e.Time.Before(o.Since)
}

// exportPage is the page size of ExportCSV's Store.List calls.
const exportPage = 1000

// ExportCSV writes tenant's entries to w as CSV, a header row
// (address,list,reason,channel,created_at,message_id) and one row per
// entry, created_at in RFC 3339 UTC, and reports the rows written (not
// counting the header). It pages through st.List, flushing each page to w,
// so the list is never in memory whole and a slow reader slows the export,
// not the server. The order is the store's (stable, not by address).
//
// An erased entry is exported with an empty address, so that the counts
// match the store's; it cannot be imported back. Cells that a spreadsheet
// would take for a formula (starting with = + - @ tab or CR, which an
// address, a channel or a message id may) get a leading single quote
// (OWASP, CSV injection); ImportCSV takes it off again.
//
// ctx is checked before each page; an error after rows were written leaves
// w with a partial export, which the caller must not present as complete.
func ExportCSV(ctx context.Context, st Store, tenant string, w io.Writer, o ExportOptions) (int, error) {
	if err := checkTenant(tenant); err != nil {
		return 0, err
	}
	if o.List != "" {
		if err := checkScope(o.List); err != nil {
			return 0, err
		}
	}
	if o.Reason != "" {
		if _, err := ParseReason(string(o.Reason)); err != nil {
			return 0, err
		}
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(colNames[:]); err != nil {
		return 0, err
	}
	rows := 0
	rec := make([]string, numCols)
	cursor := ""
	for {
		entries, next, err := st.List(ctx, tenant, o.List, cursor, exportPage)
		if err != nil {
			return rows, err
		}
		for _, e := range entries {
			if !o.Keeps(e) {
				continue
			}
			rec[colAddress] = neutralise(e.Address)
			rec[colList] = neutralise(e.List)
			rec[colReason] = neutralise(string(e.Reason))
			rec[colChannel] = neutralise(e.Channel)
			rec[colCreated] = e.Time.UTC().Format(time.RFC3339Nano)
			rec[colMessageID] = neutralise(e.MessageID)
			if err := cw.Write(rec); err != nil {
				return rows, err
			}
			rows++
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return rows, err
		}
		if next == "" {
			return rows, nil
		}
		cursor = next
	}
}
