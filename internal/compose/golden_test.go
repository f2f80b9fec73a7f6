package compose

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// goldenCases are the inputs in testdata: NN-name.eml, rendered for the
// list its X-Heed-List names, must give NN-name.golden byte for byte.
func goldenCases(t testing.TB) []string {
	t.Helper()
	ins, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	return ins
}

func TestGolden(t *testing.T) {
	for _, p := range goldenCases(t) {
		name := strings.TrimSuffix(filepath.Base(p), ".eml")
		t.Run(name, func(t *testing.T) {
			msg, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			got := renderAs(t, msg, input(listOf(t, msg)))
			golden := strings.TrimSuffix(p, ".eml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				n, g, w := firstDiff(got, want)
				t.Errorf("output differs from %s at line %d:\n got: %q\nwant: %q", golden, n, g, w)
			}
		})
	}
}

// firstDiff returns the first line, numbered from 1, where a and b
// differ, and the two lines.
func firstDiff(a, b []byte) (int, string, string) {
	la, lb := strings.SplitAfter(string(a), "\n"), strings.SplitAfter(string(b), "\n")
	for i := 0; ; i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y || i >= len(la) && i >= len(lb) {
			return i + 1, x, y
		}
	}
}
