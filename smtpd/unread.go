package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/fsutil"
	"github.com/heedmail/heed/internal/ids"
)

// unreadStore is reports/unread: the reports the inbound listener could
// not read, one .eml file each, for the operator.
//
// The feedback-loop addresses (fbl@, abuse@ the return-path domain) need
// no MAC, so anyone can send to them, and what cannot be read is kept. The
// folder is therefore bounded three ways: each file keeps only the start
// of its report, the folder holds at most maxFiles files and maxBytes
// bytes, and files older than retention are purged. When a new report
// would pass a bound, the oldest files are deleted to make room: the
// newest reports are the ones an operator is looking for, and a flood
// must not turn real reports away once the folder is full.
type unreadStore struct {
	dir       string
	maxFiles  int
	maxBytes  int64
	keepBytes int64
	retention time.Duration
	now       func() time.Time
	log       *slog.Logger

	// mu makes each make-room-and-write step atomic: two sessions
	// keeping reports at once must not both count the room that is left.
	mu sync.Mutex
	// last is the time in the newest name handed out, so that names sort
	// in the order the reports came even within one millisecond (ids
	// order by millisecond only).
	last time.Time
}

// unreadFile is one kept report: its name and when it was kept.
type unreadFile struct {
	name string
	at   time.Time
	size int64
}

// keep stores the start of body under a new name, after deleting the
// oldest files the bounds require, and returns its path. On return the
// file and the deletions are on disk.
func (u *unreadStore) keep(body []byte) (string, error) {
	data := u.truncate(body)
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := os.MkdirAll(u.dir, 0o700); err != nil {
		return "", err
	}
	files, total, err := u.list()
	if err != nil {
		return "", err
	}
	for len(files) > 0 && (len(files) >= u.maxFiles || total+int64(len(data)) > u.maxBytes) {
		oldest := files[0]
		if err := u.remove(oldest.name); err != nil {
			return "", err
		}
		u.log.Warn("inbound: deleted the oldest unread report to make room for a new one",
			"file", filepath.Join(u.dir, oldest.name), "kept_at", oldest.at.UTC().Format(time.RFC3339),
			"files", len(files), "bytes", total, "max_files", u.maxFiles, "max_bytes", u.maxBytes)
		files, total = files[1:], total-oldest.size
	}
	path := filepath.Join(u.dir, u.name())
	// The directory sync after the write also makes the removals durable.
	return path, fsutil.WriteFileSync(path, data)
}

// truncatedField marks a kept report cut short. It is a header field so
// that the file is still a message mail tools can open.
const truncatedField = "X-Heed-Truncated"

// truncate returns what is kept of body: all of it when it fits in
// keepBytes, else a truncatedField saying how much was cut, then the
// lines of body that fit. The header and the start of the body are what
// say why a report could not be read; the rest is mostly the quoted
// original.
func (u *unreadStore) truncate(body []byte) []byte {
	if int64(len(body)) <= u.keepBytes {
		return body
	}
	mark := fmt.Sprintf("%s: the report had %d bytes; only its first lines, up to %d bytes, are kept (smtp.inbound.unread_report_keep_bytes)\r\n",
		truncatedField, len(body), u.keepBytes)
	cut := body[:max(0, int(u.keepBytes)-len(mark))]
	if i := bytes.LastIndex(cut, []byte("\r\n")); i >= 0 {
		cut = cut[:i+2] // whole lines only
	}
	return append([]byte(mark), cut...)
}

// name returns a new file name whose ids.Time is the (injected) time now,
// or a millisecond after the previous name's when the clock has not moved
// on, so that sorting by that time is sorting by arrival.
func (u *unreadStore) name() string {
	t := u.now().Truncate(time.Millisecond)
	if !t.After(u.last) {
		t = u.last.Add(time.Millisecond)
	}
	u.last = t
	return ids.New(t) + ".eml"
}

// list returns the kept reports, oldest first, and their total size. A
// file named otherwise than keep names files (copied in by hand) is dated
// by its modification time.
func (u *unreadStore) list() ([]unreadFile, int64, error) {
	entries, err := os.ReadDir(u.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var files []unreadFile
	var total int64
	for _, e := range entries {
		// Temporary files of a write in progress start with a dot.
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // erased meanwhile (a privacy request)
		}
		if err != nil {
			return nil, 0, err
		}
		at, ok := ids.Time(strings.TrimSuffix(e.Name(), ".eml"))
		if !ok {
			at = info.ModTime()
		}
		files = append(files, unreadFile{name: e.Name(), at: at, size: info.Size()})
		total += info.Size()
	}
	slices.SortStableFunc(files, func(a, b unreadFile) int { return a.at.Compare(b.at) })
	return files, total, nil
}

func (u *unreadStore) remove(name string) error {
	err := os.Remove(filepath.Join(u.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// purge deletes the reports kept longer than the retention period and
// returns how many it deleted.
func (u *unreadStore) purge() (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	files, _, err := u.list()
	if err != nil {
		return 0, err
	}
	cutoff := u.now().Add(-u.retention)
	n := 0
	for _, f := range files {
		if !f.at.Before(cutoff) {
			break // oldest first: the rest are younger
		}
		if err := u.remove(f.name); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 {
		return n, fsutil.SyncDir(u.dir)
	}
	return 0, nil
}
