package tenant_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoDatabaseImports: the registry reaches its rows through Rows only,
// so that it runs the same on every backend (docs/storage.md).
func TestNoDatabaseImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "go.etcd.io/bbolt" || strings.HasPrefix(p, "github.com/jackc/") ||
				strings.HasPrefix(p, "github.com/heedmail/heed/internal/store") ||
				strings.HasPrefix(p, "github.com/heedmail/heed/internal/backend") {
				t.Errorf("%s imports %s: the registry's rows are reached through Rows", name, p)
			}
		}
	}
}
