package unread

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is an injected clock the test sets by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newStore(t *testing.T, dir string, c *clock) *Store {
	return New(Options{Dir: dir, Now: c.now, Retention: 30 * 24 * time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func keep(t *testing.T, s *Store, subject string) Report {
	t.Helper()
	r, err := s.Keep(Report{Reason: Unparsable, Detail: "report: unparsable"}, []byte("Subject: "+subject+"\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func idsOf(rs []Report) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// TestRetentionAfterClockStep: a clock stepped a year forward for one
// report and then set right must not date the reports after it into the
// future: a retention pass a month on deletes every report received a
// month before, and keeps the one received "in the future".
func TestRetentionAfterClockStep(t *testing.T) {
	c := &clock{t: start}
	s := newStore(t, t.TempDir(), c)
	first := keep(t, s, "first")
	c.set(start.AddDate(1, 0, 0))
	future := keep(t, s, "while the clock was wrong")
	c.set(start.Add(time.Hour))
	after := keep(t, s, "after the clock was set right")
	if after.ID > future.ID {
		t.Errorf("the report after the clock was set right has an id (%s) after the wrong clock's (%s): it stays dated in the future", after.ID, future.ID)
	}
	c.set(start.Add(31 * 24 * time.Hour))
	n, err := s.Purge()
	if err != nil || n != 2 {
		t.Fatalf("a pass 31 days on deleted %d (%v), want the 2 reports received then", n, err)
	}
	rs, _, err := s.List("", 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := idsOf(rs); !slices.Equal(got, []string{future.ID}) {
		t.Errorf("kept %v, want only %s (not %s, %s)", got, future.ID, first.ID, after.ID)
	}
}

// TestPurgeClearsCrashRemains: a crash leaves temporary files of a write
// (".ID.eml.tmp-*") and records without their report; a retention pass
// removes them, and keeps the reports.
func TestPurgeClearsCrashRemains(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: start}
	s := newStore(t, dir, c)
	kept := keep(t, s, "kept")
	orphan := keep(t, s, "its report was never renamed into place")
	if err := os.Remove(filepath.Join(dir, orphan.ID+reportExt)); err != nil {
		t.Fatal(err)
	}
	temp := filepath.Join(dir, "."+orphan.ID+".eml.tmp-1234")
	if err := os.WriteFile(temp, []byte("Subject: half written\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	var names []string
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		names = append(names, de.Name())
	}
	if want := []string{kept.ID + ".eml", kept.ID + ".json"}; !slices.Equal(names, want) {
		t.Errorf("after a pass the folder holds %v, want %v", names, want)
	}
}

// TestRestartKeepsReasons: a store opened again on the folder lists every
// report, newest first, with the reason and details it was kept with,
// page by page.
func TestRestartKeepsReasons(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: start}
	s := newStore(t, dir, c)
	var want []Report
	for i, reason := range []Reason{Unparsable, UnknownMessage, Feedback, NotActionable, Feedback} {
		r, err := s.Keep(Report{Reason: reason, Detail: string(reason), FeedbackType: "not-spam", Client: "192.0.2.1",
			Recipients: []string{"fbl@bounces.example"}}, []byte("Subject: "+string(rune('a'+i))+"\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		want = append([]Report{r}, want...) // newest first
		c.set(c.now().Add(time.Minute))
	}
	again := newStore(t, dir, c)
	var got []Report
	cursor := ""
	for {
		page, next, err := again.List(cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d reports after a restart, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Reason != w.Reason || g.Detail != w.Detail || !g.ReceivedAt.Equal(w.ReceivedAt) ||
			g.Client != w.Client || !slices.Equal(g.Recipients, w.Recipients) || g.Size != w.Size {
			t.Errorf("report %d after a restart: %+v, want %+v", i, g, w)
		}
	}
}

// TestOpenRefusesOtherNames: only ids of the store's scheme open a file;
// a path, a dot-file, an upper-case spelling or a file outside the folder
// is not found, whatever exists on disk.
func TestOpenRefusesOtherNames(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "reports", "unread")
	c := &clock{t: start}
	s := newStore(t, dir, c)
	r := keep(t, s, "kept")
	if err := os.WriteFile(filepath.Join(root, "heed.db"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../../heed", "../../heed.db", "..%2F..%2Fheed.db", "." + r.ID, r.ID + ".eml",
		strings.ToUpper(r.ID), "", r.ID + "/", "/" + r.ID} {
		if f, _, err := s.Open(id); !errors.Is(err, ErrNotFound) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%q) = %v, want ErrNotFound", id, err)
		}
		if err := s.Delete(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", id, err)
		}
	}
	f, got, err := s.Open(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "Subject: kept\r\n\r\nbody\r\n" || got.Reason != Unparsable {
		t.Errorf("Open(%s) = %q, %+v", r.ID, b, got)
	}
	if _, _, err := s.List("../x", 1); !errors.Is(err, ErrBadCursor) {
		t.Errorf("List with a forged cursor: %v, want ErrBadCursor", err)
	}
}
