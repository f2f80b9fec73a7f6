package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/dkim"
)

// TestVersionNamesSigner: `heed version` says which RSA signer the binary
// was built with, so an operator can check a build without serving.
func TestVersionNamesSigner(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := "DKIM RSA signer: " + dkim.RSASigner() + "\n"
	if !strings.HasPrefix(out.String(), "heed ") || !strings.Contains(out.String(), want) {
		t.Errorf("heed version printed %q, want a line %q", out.String(), want)
	}
}
