package outbound

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/fsutil"
)

// Captured describes one captured message, as stored in its JSON sidecar.
type Captured struct {
	ID         string    `json:"id"` // file name without extension
	MessageID  string    `json:"message_id"`
	Recipient  int       `json:"recipient"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Tenant     string    `json:"tenant"`
	List       string    `json:"list"`
	Size       int64     `json:"size"`
	CapturedAt time.Time `json:"captured_at"`
}

const (
	captureExt = ".eml"
	sidecarExt = ".json"
)

// capture writes the message and then its sidecar, each atomically, so a
// sidecar always names a complete message. Capturing the same recipient of
// the same message again (a retry after a crash) replaces the earlier copy.
func (t *Transport) capture(env Envelope, msg []byte) Result {
	c := Captured{
		ID:         captureID(env),
		MessageID:  env.MessageID,
		Recipient:  env.Recipient,
		From:       env.From,
		To:         env.To,
		Tenant:     env.Tenant,
		List:       env.List,
		Size:       int64(len(msg)),
		CapturedAt: time.Now().UTC(),
	}
	side, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return temporary("4.3.0", "capture failed: %v", err)
	}
	dir := t.o.CaptureDir
	if err := fsutil.WriteFile(dir, c.ID+captureExt, msg); err != nil {
		return temporary("4.3.0", "capture failed: %v", err)
	}
	if err := fsutil.WriteFile(dir, c.ID+sidecarExt, append(side, '\n')); err != nil {
		return temporary("4.3.0", "capture failed: %v", err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return temporary("4.3.0", "capture failed: %v", err)
	}
	return Result{Code: 250, Enhanced: "2.0.0", Text: "captured"}
}

// captureID names the files of one captured recipient. The message id comes
// from the queue, but is still reduced to a safe file name.
func captureID(env Envelope) string {
	id := []byte(env.MessageID)
	for i, b := range id {
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			b == '-' || b == '_' || b == '.'
		if !ok || (b == '.' && (i == 0 || id[i-1] == '.')) {
			id[i] = '_'
		}
	}
	return string(id) + "-" + strconv.Itoa(env.Recipient)
}

// ListCaptured returns the messages captured in dir, oldest first (by
// capture time, then id). A missing directory holds none.
func ListCaptured(dir string) ([]Captured, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Captured
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, sidecarExt) || strings.HasPrefix(name, ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var c Captured
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("outbound: capture sidecar %s: %w", name, err)
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Captured) int {
		return cmp.Or(a.CapturedAt.Compare(b.CapturedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// OpenCaptured opens the message of a captured id. Ids come from outside
// (the admin API, a test), so anything that could name another file is
// refused, and the open cannot leave dir even through a symlink.
func OpenCaptured(dir, id string) (io.ReadCloser, error) {
	if id == "" || strings.ContainsAny(id, `/\`+"\x00") || strings.Contains(id, "..") || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("outbound: invalid capture id %q", id)
	}
	return os.OpenInRoot(dir, id+captureExt)
}
