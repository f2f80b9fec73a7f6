package queue

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/heedmail/heed/internal/fsutil"
)

// Spool keeps message bodies. A body of at most InlineMax bytes stays in
// memory and is stored in the database in the same group commit as its
// record: no file, no file fsync, no directory fsync, no unlink, which on
// a small disk is most of what accepting a message costs. A larger body is
// one file beside the database, written in mox's order: the file is
// written and fsynced, its directory is fsynced, and only then is the
// database record committed; a message whose record never committed leaves
// a file that the start-up sweep removes.
type Spool struct {
	dir string
	// InlineMax is the largest body kept in the database (default 64 KiB;
	// 0 puts every body in a file).
	InlineMax int

	mu      sync.Mutex
	waiters []chan error // waiting for the next directory fsync
	syncing bool
}

// OpenSpool opens (creating) the spool directory.
func OpenSpool(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Spool{dir: dir, InlineMax: 64 << 10}, nil
}

// DatabaseSpool returns a spool that keeps every body in memory until it
// is stored with its record, for a backend that keeps bodies in its rows
// (PostgreSQL: a node keeps no state of its own). It has no directory:
// nothing is ever read from, written to or swept out of one.
func DatabaseSpool() *Spool { return &Spool{InlineMax: math.MaxInt} }

// Body collects one message body, in memory up to InlineMax, in a spool
// file beyond.
type Body struct {
	s   *Spool
	id  string
	buf []byte
	f   *SpoolFile
}

// NewBody starts the body of message id.
func (s *Spool) NewBody(id string) *Body { return &Body{s: s, id: id} }

func (b *Body) Write(p []byte) (int, error) {
	if b.f == nil && len(b.buf)+len(p) <= b.s.InlineMax {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	if b.f == nil {
		f, err := b.s.Create(b.id)
		if err != nil {
			return 0, err
		}
		b.f = f
		if _, err := f.Write(b.buf); err != nil {
			return 0, err
		}
		b.buf = nil
	}
	return b.f.Write(p)
}

// Size is the number of bytes written so far.
func (b *Body) Size() int64 {
	if b.f != nil {
		return b.f.Size()
	}
	return int64(len(b.buf))
}

// Inline returns the body when it is kept in the database, nil when it is
// in a spool file.
func (b *Body) Inline() []byte {
	if b.f != nil {
		return nil
	}
	if b.buf == nil {
		return []byte{}
	}
	return b.buf
}

// Sync makes a spooled body durable (an inline one becomes durable with
// its record).
func (b *Body) Sync() error {
	if b.f == nil {
		return nil
	}
	return b.f.Sync()
}

// Abort discards a body that will not be committed.
func (b *Body) Abort() {
	if b.f != nil {
		b.f.Abort()
	}
}

func (s *Spool) path(id string) string { return filepath.Join(s.dir, id+".eml") }

// SpoolFile is a message body being written.
type SpoolFile struct {
	s    *Spool
	id   string
	f    *os.File
	n    int64
	done bool
}

// Create starts the body of message id.
func (s *Spool) Create(id string) (*SpoolFile, error) {
	if s.dir == "" {
		return nil, errors.New("spool: this spool keeps bodies in the database")
	}
	f, err := os.OpenFile(s.path(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &SpoolFile{s: s, id: id, f: f}, nil
}

func (w *SpoolFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (w *SpoolFile) Size() int64 { return w.n }

// Sync makes the body durable: the file is fsynced and closed, then the
// directory entry is fsynced (shared with other files syncing at the same
// time).
func (w *SpoolFile) Sync() error {
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	w.done = true
	return w.s.syncDir()
}

// Abort removes a body that will not be committed.
func (w *SpoolFile) Abort() {
	if !w.done {
		w.f.Close()
	}
	os.Remove(w.s.path(w.id))
}

// syncDir fsyncs the spool directory. Callers that arrive while a sync is
// running wait for the next one, which then covers all of them.
func (s *Spool) syncDir() error {
	ch := make(chan error, 1)
	s.mu.Lock()
	s.waiters = append(s.waiters, ch)
	if !s.syncing {
		s.syncing = true
		go s.dirSyncLoop()
	}
	s.mu.Unlock()
	return <-ch
}

func (s *Spool) dirSyncLoop() {
	for {
		s.mu.Lock()
		batch := s.waiters
		s.waiters = nil
		if len(batch) == 0 {
			s.syncing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		err := fsutil.SyncDir(s.dir)
		for _, ch := range batch {
			ch <- err
		}
	}
}

// ReadAll returns the body of message id.
func (s *Spool) ReadAll(id string) ([]byte, error) {
	if s.dir == "" {
		return nil, fmt.Errorf("spool: body of %s is missing (bodies are in the database)", id)
	}
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("spool: body of %s is missing", id)
	}
	return b, err
}

// Remove deletes the body of message id once no recipient needs it.
func (s *Spool) Remove(id string) error {
	if s.dir == "" {
		return nil
	}
	err := os.Remove(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Rewrite replaces every body file that edit changes (edit returns the
// new body and true) through a temporary file and a rename, with one
// directory fsync for them all, shared with sessions syncing at the same
// moment. A file that cannot be read is left as it is.
func (s *Spool) Rewrite(edit func(body []byte) ([]byte, bool)) error {
	if s.dir == "" {
		return nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	rewrote := false
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".eml")
		if !ok {
			continue
		}
		b, err := s.ReadAll(id)
		if err != nil {
			continue
		}
		nb, changed := edit(b)
		if !changed {
			continue
		}
		if err := fsutil.WriteFile(s.dir, e.Name(), nb); err != nil {
			return err
		}
		rewrote = true
	}
	if !rewrote {
		return nil
	}
	return s.syncDir()
}

// Sweep removes bodies for which keep returns false: files left by a crash
// between the body's fsync and the database commit (no 250 was sent for
// them).
func (s *Spool) Sweep(keep func(id string) bool) (removed int, err error) {
	if s.dir == "" {
		return 0, nil
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".eml")
		if !ok || keep(id) {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err == nil {
			removed++
		}
	}
	return removed, nil
}
