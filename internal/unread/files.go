package unread

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/fsutil"
	"github.com/heedmail/heed/internal/ids"
)

// The two files of a report.
const (
	reportExt = ".eml"
	recordExt = ".json"
)

// TruncatedField marks a kept report cut short. It is a header field so
// that the file is still a message mail tools can open.
const TruncatedField = "X-Heed-Truncated"

// entry is one report in the folder, or a file the store did not name
// (copied in by hand), which is counted against the bounds all the same.
type entry struct {
	stem   string    // the id, or a loose file's whole name
	at     time.Time // the id's time, or a loose file's modification time
	size   int64     // of every file of the entry
	report bool      // ID.eml is there (always, for a loose file)
	record bool      // ID.json is there
	loose  bool
}

// files returns the entry's file names.
func (e entry) files() []string {
	if e.loose {
		return []string{e.stem}
	}
	var out []string
	if e.report {
		out = append(out, e.stem+reportExt)
	}
	if e.record {
		out = append(out, e.stem+recordExt)
	}
	return out
}

// scan reads the folder: the entries, oldest first, and the temporary
// files of writes (fsutil.WriteFile's ".name.tmp-*"). Entries that are a
// record alone are included with report false.
func (s *Store) scan() (entries []entry, temps []string, err error) {
	des, err := os.ReadDir(s.o.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	byStem := map[string]*entry{}
	for _, de := range des {
		name := de.Name()
		if !de.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(name, ".") {
			if strings.Contains(name, ".tmp-") {
				temps = append(temps, name)
			}
			continue
		}
		info, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // erased meanwhile (a privacy request)
		}
		if err != nil {
			return nil, nil, err
		}
		stem, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		if !ValidID(stem) || ext != reportExt && ext != recordExt {
			entries = append(entries, entry{stem: name, at: info.ModTime(), size: info.Size(), report: true, loose: true})
			continue
		}
		e := byStem[stem]
		if e == nil {
			at, _ := ids.Time(stem)
			e = &entry{stem: stem, at: at}
			byStem[stem] = e
		}
		e.size += info.Size()
		if ext == reportExt {
			e.report = true
		} else {
			e.record = true
		}
	}
	for _, e := range byStem {
		entries = append(entries, *e)
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.stem, b.stem)
	})
	return entries, temps, nil
}

// Keep stores the start of body with its record r, after deleting the
// oldest reports the bounds require, and returns the record as written
// (ID, ReceivedAt, Size and Truncated set by the store). On return both
// files and the deletions are on disk.
func (s *Store) Keep(r Report, body []byte) (Report, error) {
	data, truncated := s.truncate(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.o.Dir, 0o700); err != nil {
		return Report{}, err
	}
	entries, _, err := s.scan()
	if err != nil {
		return Report{}, err
	}
	now := s.o.Now()
	r.ID, r.ReceivedAt = s.newID(now), now.UTC()
	r.Size, r.Truncated = int64(len(body)), truncated
	r.Detail, r.Client, r.MailFrom = clip(r.Detail), clip(r.Client), clip(r.MailFrom)
	r.FeedbackType = clip(r.FeedbackType)
	if len(r.Recipients) > maxRecipients {
		r.Recipients = r.Recipients[:maxRecipients]
	}
	rec, err := json.Marshal(r)
	if err != nil {
		return Report{}, err
	}
	if err := s.makeRoom(entries, int64(len(data)+len(rec))); err != nil {
		return Report{}, err
	}
	// The record first, made durable, then the report: a report file
	// always has its record (see the package doc).
	if err := fsutil.WriteFileSync(filepath.Join(s.o.Dir, r.ID+recordExt), rec); err != nil {
		return Report{}, err
	}
	if err := fsutil.WriteFileSync(filepath.Join(s.o.Dir, r.ID+reportExt), data); err != nil {
		os.Remove(filepath.Join(s.o.Dir, r.ID+recordExt))
		return Report{}, err
	}
	if s.o.Kept != nil {
		s.o.Kept(r)
	}
	return r, nil
}

// makeRoom deletes the oldest reports until one more of size bytes fits
// the bounds. The caller holds mu and syncs the directory afterwards.
func (s *Store) makeRoom(entries []entry, size int64) error {
	var total int64
	n := 0
	for _, e := range entries {
		total += e.size
		if e.report {
			n++
		}
	}
	for len(entries) > 0 && (n >= s.o.MaxFiles || total+size > s.o.MaxBytes) {
		oldest := entries[0]
		if err := s.remove(oldest); err != nil {
			return err
		}
		if oldest.report {
			n--
			s.o.Logger.Warn("inbound: deleted the oldest unread report to make room for a new one",
				"file", filepath.Join(s.o.Dir, oldest.files()[0]), "kept_at", oldest.at.UTC().Format(time.RFC3339),
				"files", n+1, "bytes", total, "max_files", s.o.MaxFiles, "max_bytes", s.o.MaxBytes)
		}
		entries, total = entries[1:], total-oldest.size
	}
	return nil
}

// remove deletes an entry's files, the report before its record.
func (s *Store) remove(e entry) error {
	for _, name := range e.files() {
		if err := os.Remove(filepath.Join(s.o.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// truncate returns what is kept of body: all of it when it fits in
// KeepBytes, else a TruncatedField saying how much was cut, then the
// lines of body that fit. The header and the start of the body are what
// say why a report could not be read; the rest is mostly the quoted
// original.
func (s *Store) truncate(body []byte) ([]byte, bool) {
	if int64(len(body)) <= s.o.KeepBytes {
		return body, false
	}
	mark := fmt.Sprintf("%s: the report had %d bytes; only its first lines, up to %d bytes, are kept (smtp.inbound.unread_report_keep_bytes)\r\n",
		TruncatedField, len(body), s.o.KeepBytes)
	cut := body[:max(0, int(s.o.KeepBytes)-len(mark))]
	if i := bytes.LastIndex(cut, []byte("\r\n")); i >= 0 {
		cut = cut[:i+2] // whole lines only
	}
	return append([]byte(mark), cut...), true
}

// Purge deletes the reports kept longer than the retention period, and
// what a crash left behind (temporary files, records without their
// report), and returns how many reports it deleted. A report's age is
// its record's ReceivedAt, else its file's modification time, never the
// time in its id: a clock stepped forward once must not date later ids
// into the future, beyond retention's reach.
func (s *Store) Purge() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	entries, temps, err := s.scan()
	if err != nil {
		return 0, err
	}
	// mu is held, so no write of this process is in progress, and one
	// relay process owns the folder: every temporary file is a crash's.
	removed := len(temps)
	for _, name := range temps {
		if err := os.Remove(filepath.Join(s.o.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}
	cutoff := s.o.Now().Add(-s.o.Retention)
	n := 0
	for _, e := range entries {
		if e.report && !s.keptAt(e).Before(cutoff) {
			continue
		}
		if err := s.remove(e); err != nil {
			return n, err
		}
		removed++
		if e.report {
			n++
		}
	}
	if removed > 0 {
		return n, fsutil.SyncDir(s.o.Dir)
	}
	return 0, nil
}

// keptAt is when the report of e was kept, for retention.
func (s *Store) keptAt(e entry) time.Time {
	if !e.loose && e.record {
		if r, err := s.readRecord(e.stem); err == nil && !r.ReceivedAt.IsZero() {
			return r.ReceivedAt
		}
	}
	info, err := os.Stat(filepath.Join(s.o.Dir, e.files()[0]))
	if err != nil {
		return e.at
	}
	return info.ModTime()
}

// readRecord reads the record of id.
func (s *Store) readRecord(id string) (Report, error) {
	b, err := os.ReadFile(filepath.Join(s.o.Dir, id+recordExt))
	if err != nil {
		return Report{}, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return Report{}, err
	}
	r.ID = id // the name is what the API answers to
	return r, nil
}
