//go:build unix

package server

import (
	"strings"
	"testing"
)

// TestNodeIdentity: the lease name is the config key node and a random
// part, kept in data_dir/node-id across restarts; a second process on a
// data_dir whose name is held gets a fresh one.
func TestNodeIdentity(t *testing.T) {
	dir := t.TempDir()
	name, release, err := nodeIdentity(dir, "heed-7")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "heed-7/") || len(name) <= len("heed-7/") {
		t.Fatalf("name %q, want heed-7/ and a random part", name)
	}
	other, rel2, err := nodeIdentity(dir, "heed-7")
	if err != nil {
		t.Fatal(err)
	}
	rel2()
	if other == name || !strings.HasPrefix(other, "heed-7/") {
		t.Errorf("a second process while the name is held got %q (the first has %q), want a fresh heed-7/ name", other, name)
	}
	release()
	again, release, err := nodeIdentity(dir, "renamed")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if again != name {
		t.Errorf("after a restart the name is %q, want the kept %q", again, name)
	}
}
