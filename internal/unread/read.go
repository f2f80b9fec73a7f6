package unread

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/heedmail/heed/internal/fsutil"
)

// List returns up to limit reports, newest first, that came before the
// one named cursor ("" for the newest), and the cursor of the next page
// ("" when there is none). Files the store did not name are counted
// against the bounds but not listed: they have no id to fetch them by.
func (s *Store) List(cursor string, limit int) ([]Report, string, error) {
	if cursor != "" && !ValidID(cursor) {
		return nil, "", ErrBadCursor
	}
	entries, _, err := s.scan()
	if err != nil {
		return nil, "", err
	}
	var page []entry
	// ids sort as their times: newest first is descending order.
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(b.stem, a.stem) })
	next := ""
	for _, e := range entries {
		if e.loose || !e.report || cursor != "" && e.stem >= cursor {
			continue
		}
		if len(page) == limit {
			next = page[len(page)-1].stem
			break
		}
		page = append(page, e)
	}
	out := make([]Report, 0, len(page))
	for _, e := range page {
		r, err := s.describe(e.stem)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, r)
	}
	return out, next, nil
}

// ErrBadCursor is List's error for a cursor it did not hand out.
var ErrBadCursor = errors.New("unread: not a cursor of this list")

// Open returns the kept report id, to be read and closed by the caller,
// with its record.
func (s *Store) Open(id string) (*os.File, Report, error) {
	if !ValidID(id) {
		return nil, Report{}, ErrNotFound
	}
	f, err := os.Open(filepath.Join(s.o.Dir, id+reportExt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Report{}, ErrNotFound
	}
	if err != nil {
		return nil, Report{}, err
	}
	r, err := s.describe(id)
	if err != nil {
		f.Close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, Report{}, ErrNotFound
		}
		return nil, Report{}, err
	}
	return f, r, nil
}

// Delete removes the kept report id and its record.
func (s *Store) Delete(id string) error {
	if !ValidID(id) {
		return ErrNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := os.Remove(filepath.Join(s.o.Dir, id+reportExt))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.o.Dir, id+recordExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fsutil.SyncDir(s.o.Dir)
}

// describe is the record of report id; a report without one is described
// from its file (Reason Unrecorded).
func (s *Store) describe(id string) (Report, error) {
	r, err := s.readRecord(id)
	if err == nil {
		return r, nil
	}
	path := filepath.Join(s.o.Dir, id+reportExt)
	info, serr := os.Stat(path)
	if serr != nil {
		return Report{}, serr
	}
	r = Report{ID: id, ReceivedAt: info.ModTime().UTC(), Reason: Unrecorded, Size: info.Size()}
	if f, err := os.Open(path); err == nil {
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		r.Truncated = strings.HasPrefix(line, TruncatedField+":")
	}
	return r, nil
}
