package outbound

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCapture(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "captured")
	tr := newTransport(t, Options{Mode: ModeCapture, CaptureDir: dir})

	other := []byte("Subject: two\r\n\r\nsecond\r\n")
	for i, m := range [][]byte{message, other} {
		r := tr.Deliver(t.Context(), env(i, "ann@example.org"), m)
		wantResult(t, r, 250, "2.0.0", "captured")
		if r.Host != "" {
			t.Errorf("host = %q, want none", r.Host)
		}
	}

	names := dirNames(t, dir)
	want := []string{"msg0-0.eml", "msg0-0.json", "msg1-1.eml", "msg1-1.json"}
	if !slices.Equal(names, want) {
		t.Fatalf("files = %v, want %v", names, want)
	}
	var side map[string]any
	data, err := os.ReadFile(filepath.Join(dir, "msg1-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &side); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "message_id", "recipient", "from", "to", "tenant", "list", "size", "captured_at"} {
		if _, ok := side[k]; !ok {
			t.Errorf("sidecar lacks %q: %s", k, data)
		}
	}

	list, err := ListCaptured(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "msg0-0" || list[1].ID != "msg1-1" {
		t.Fatalf("ListCaptured = %+v", list)
	}
	c := list[1]
	if c.MessageID != "msg1" || c.Recipient != 1 || c.To != "ann@example.org" || c.From != "bounce+1@heed.example" ||
		c.Tenant != "t1" || c.List != "news" || c.Size != int64(len(other)) || c.CapturedAt.IsZero() {
		t.Errorf("captured = %+v", c)
	}
	for i, want := range [][]byte{message, other} {
		rc, err := OpenCaptured(dir, list[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("OpenCaptured(%s) = %q, %v", list[i].ID, got, err)
		}
	}
}

func TestOpenCapturedRefusesPaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "x.eml"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../x", "..", "a/b", `a\b`, "", ".hidden", "/etc/passwd"} {
		if rc, err := OpenCaptured(dir, id); err == nil {
			_ = rc.Close()
			t.Errorf("OpenCaptured(%q) succeeded", id)
		}
	}
}

func TestCaptureIDIsAFileName(t *testing.T) {
	if got := captureID(Envelope{MessageID: "01J9ZX.a-b_c", Recipient: 3}); got != "01J9ZX.a-b_c-3" {
		t.Errorf("captureID kept nothing: %q", got)
	}
	for _, in := range []string{"../../etc/pw", ".hidden", "a..b", `c:\x`, "a/./b", "..."} {
		got := captureID(Envelope{MessageID: in, Recipient: 3})
		if strings.ContainsAny(got, `/\:`) || strings.Contains(got, "..") || strings.HasPrefix(got, ".") {
			t.Errorf("captureID(%q) = %q, not a safe file name", in, got)
		}
	}
}

func TestListCapturedMissingDir(t *testing.T) {
	list, err := ListCaptured(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(list) != 0 {
		t.Errorf("ListCaptured = %v, %v", list, err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
