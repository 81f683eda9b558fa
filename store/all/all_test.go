package all_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
)

const module = "github.com/ferrytool/ferry/"

// root is the module's directory.
var root = filepath.Join("..", "..")

var fset = token.NewFileSet()

// parseDir parses the non-test Go files of the package in dir (relative to the module).
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(root, dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

func imports(files []*ast.File) []string {
	var out []string
	for _, f := range files {
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out = append(out, p)
		}
	}
	return out
}

// TestTransferImportsNoKind: the orchestration reaches stores through package store and
// their abilities only; the kinds are registered where the program is assembled.
func TestTransferImportsNoKind(t *testing.T) {
	seen := map[string]bool{}
	queue := []string{"transfer"}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if strings.HasPrefix(dir, "store/") {
			t.Errorf("transfer depends on %s", dir)
		}
		for _, p := range imports(parseDir(t, dir)) {
			if rest, ok := strings.CutPrefix(p, module); ok {
				queue = append(queue, rest)
			}
		}
	}
}

// TestNoKindNamed: outside the kinds' own packages and their registration, the code names
// no kind of store: what it does with a store comes from the store's Kind and abilities.
func TestNoKindNamed(t *testing.T) {
	var names []string
	for _, k := range store.Kinds() {
		names = append(names, strconv.Quote(k.Name), strconv.Quote(k.Name+":"))
	}
	if len(names) == 0 {
		t.Fatal("no kinds registered")
	}
	for _, dir := range []string{"store", "transfer", "cmd/ferry"} {
		for _, f := range parseDir(t, dir) {
			file := filepath.Base(fset.Position(f.Package).Filename)
			for _, p := range imports([]*ast.File{f}) {
				// A verb of a kind's own (ferry pool: cmd_pool*.go) may use its package.
				rest, ok := strings.CutPrefix(p, module+"store/")
				if ok && rest != "all" && !strings.HasPrefix(file, "cmd_"+rest) {
					t.Errorf("%s/%s imports the kind %s", dir, file, rest)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if kv, ok := n.(*ast.KeyValueExpr); ok && fmt.Sprint(kv.Key) == "Use" {
					return false // a verb's name ("pool"), not a store's
				}
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && slices.Contains(names, lit.Value) {
					t.Errorf("%s names the kind %s", dir, lit.Value)
				}
				return true
			})
		}
	}
}

// TestKinds: every kind says what the grammar needs, in the grammar's order, and the rules
// it declares are the ones the store applies.
func TestKinds(t *testing.T) {
	kinds := store.Kinds()
	if store.DefaultRef() == "" {
		t.Error("no kind is the default")
	}
	for _, k := range kinds {
		if k.Name == "" || k.Syntax == "" || k.Doc == "" || k.Open == nil {
			t.Errorf("kind %+v lacks a name, syntax, doc or Open", k)
		}
		if k.Socket && !k.Remote {
			t.Errorf("%s takes a socket on a host but cannot be on one", k.Name)
		}
		err := k.OnHost("/run/x.sock")
		if (err == nil) != (k.Remote && k.Socket) {
			t.Errorf("%s on a host with a socket: %v", k.Name, err)
		}
	}
}

// TestSuiteInTestsOnly: the packages that start daemons and hold the conformance suite
// are imported by tests only, and by each other.
func TestSuiteInTestsOnly(t *testing.T) {
	testOnly := []string{"internal/testenv", "store/storetest"}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
			return filepath.SkipDir
		}
		dir, _ := filepath.Rel(root, path)
		dir = filepath.ToSlash(dir)
		if slices.Contains(testOnly, dir) {
			return nil
		}
		for _, p := range imports(parseDir(t, dir)) {
			if rest, ok := strings.CutPrefix(p, module); ok && slices.Contains(testOnly, rest) {
				t.Errorf("%s imports %s, which only tests may", dir, rest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
