package lint

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/hearth-cloud/hearth"

// repoRoot is the module's directory: the nearest parent with a go.mod
// declaring the module.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if !bytes.HasPrefix(b, []byte("module "+module+"\n")) {
				t.Fatalf("%s/go.mod is not module %s", dir, module)
			}
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// skipDir reports whether the directory rel (slash-separated, relative
// to the root) holds no packages to check: build-tagged suites, and
// directories the go command ignores.
func skipDir(rel string) bool {
	switch rel {
	case "test/e2e", "bench":
		return true
	}
	base := filepath.Base(rel)
	return rel != "." && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") || base == "testdata" || base == "vendor")
}

func isSource(fi fs.FileInfo) bool {
	n := fi.Name()
	return strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") && !strings.HasPrefix(n, ".") && !strings.HasPrefix(n, "_")
}

// packageDirs returns every directory under root with non-test Go files.
func packageDirs(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skipDir(rel) {
			return filepath.SkipDir
		}
		// Another module nested in this one is not ours to check.
		if rel != "." {
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && isSource(fi) {
				dirs = append(dirs, rel)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestPackageDocs(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dirs := packageDirs(t, root)
	// The walk found the packages it should: a broken walk must not pass
	// by checking nothing.
	for _, want := range []string{"cradle/spec", "cradle/guest/stub", "image", "internal/lint", "cmd/hearth"} {
		if !slices.Contains(dirs, want) {
			t.Fatalf("package directory %s not found; found %v", want, dirs)
		}
	}
	for _, skipped := range []string{"test/e2e", "bench"} {
		if slices.Contains(dirs, skipped) {
			t.Fatalf("%s is build-tagged and should be skipped", skipped)
		}
	}
	for _, problem := range undocumented(root, dirs) {
		t.Error(problem)
	}
}

// undocumented returns a problem for every package in dirs (relative to
// root) that has no package doc comment in any of its non-test files.
func undocumented(root string, dirs []string) []string {
	var problems []string
	for _, rel := range dirs {
		fset := token.NewFileSet()
		// ParseDir ignores build tags, which do not matter for doc comments.
		pkgs, err := parser.ParseDir(fset, filepath.Join(root, rel), isSource, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			problems = append(problems, rel+": "+err.Error())
			continue
		}
		if len(pkgs) == 0 {
			problems = append(problems, rel+": no package parsed")
		}
		for name, pkg := range pkgs {
			if !hasDoc(pkg) {
				problems = append(problems, fmt.Sprintf("package %s (%s) has no doc comment: add `// Package %s ...` above the package clause of one file", name, rel, name))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// The check finds a package without a doc comment, and is not fooled by
// a test file's doc or a comment that is not attached to the clause.
func TestUndocumented(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	files := map[string]string{
		"good/a.go":        "package good\n",
		"good/doc.go":      "// Package good is documented.\npackage good\n",
		"bad/b.go":         "package bad\n",
		"bad/b_test.go":    "// Package bad is documented only in a test.\npackage bad\n",
		"detached/d.go":    "// Detached comment.\n\npackage detached\n",
		"cmd/tool/main.go": "// Command tool does things.\npackage main\n",
		"broken/x.go":      "package\n",
	}
	for name, src := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dirs := packageDirs(t, root)
	if want := []string{"bad", "broken", "cmd/tool", "detached", "good"}; !slices.Equal(dirs, want) {
		t.Fatalf("packageDirs = %v, want %v", dirs, want)
	}
	got := undocumented(root, dirs)
	if len(got) != 3 || !strings.HasPrefix(got[0], "broken: ") ||
		!strings.HasPrefix(got[1], "package bad (bad)") || !strings.HasPrefix(got[2], "package detached (detached)") {
		t.Fatalf("undocumented = %q, want problems for broken, bad and detached", got)
	}
}

func hasDoc(pkg *ast.Package) bool {
	for _, f := range pkg.Files {
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			return true
		}
	}
	return false
}

func goCmd(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	return p
}

type dep struct {
	path     string
	standard bool
}

// deps lists pkg and everything it depends on, with go list -deps.
func deps(t *testing.T, root, pkg string) []dep {
	t.Helper()
	cmd := exec.Command(goCmd(t), "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	var ds []dep
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		path, std, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("go list output %q", sc.Text())
		}
		ds = append(ds, dep{path, std == "true"})
	}
	if len(ds) == 0 || ds[len(ds)-1].path != pkg {
		t.Fatalf("go list -deps %s: output does not end with the package itself:\n%s", pkg, out)
	}
	return ds
}

// forbidden are the prefixes (whole path elements) the guest side must
// not depend on: the control plane's dependencies and the host side.
var forbidden = []string{
	"go.etcd.io",
	"k8s.io",
	module + "/cradle/host",
	module + "/cradle/shim",
	module + "/macro",
	module + "/api",
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func forbiddenDeps(ds []dep) []string {
	var bad []string
	for _, d := range ds {
		for _, f := range forbidden {
			if under(d.path, f) {
				bad = append(bad, d.path)
			}
		}
	}
	return bad
}

func TestUnder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path, prefix string
		want         bool
	}{
		{"k8s.io", "k8s.io", true},
		{"k8s.io/api/core/v1", "k8s.io", true},
		{"sigs.k8s.io/yaml", "k8s.io", false},
		{module + "/cradle/host", module + "/cradle/host", true},
		{module + "/cradle/host/sub", module + "/cradle/host", true},
		{module + "/cradle/hostile", module + "/cradle/host", false},
		{module + "/apis", module + "/api", false},
		{module + "/api/docker", module + "/api", true},
	}
	for _, tt := range tests {
		if got := under(tt.path, tt.prefix); got != tt.want {
			t.Errorf("under(%q, %q) = %v, want %v", tt.path, tt.prefix, got, tt.want)
		}
	}
}

func TestGuestImports(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	tests := []struct {
		pkg string
		// wantBad: the package is on the host side, so the check must
		// find something; it shows the check works.
		wantBad bool
		// stdOnly: nothing but the standard library (and the package).
		stdOnly bool
	}{
		{pkg: module + "/cradle/guest"},
		{pkg: module + "/cradle/guest/stub", stdOnly: true},
		{pkg: module + "/cradle/spec", stdOnly: true},
		{pkg: module + "/cmd/hearth-init"},
		{pkg: module + "/cmd/hearth-stub"},
		{pkg: module + "/cradle/shim", wantBad: true},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.pkg, module+"/"), func(t *testing.T) {
			t.Parallel()
			ds := deps(t, root, tt.pkg)
			bad := forbiddenDeps(ds)
			if tt.wantBad {
				if len(bad) == 0 {
					t.Fatalf("%s: the check found no host-side dependency in %v", tt.pkg, ds)
				}
				return
			}
			if len(bad) > 0 {
				t.Errorf("%s depends on host-side packages: %v", tt.pkg, bad)
			}
			if tt.stdOnly {
				for _, d := range ds {
					if !d.standard && d.path != tt.pkg {
						t.Errorf("%s depends on %s, which is not in the standard library", tt.pkg, d.path)
					}
				}
			}
		})
	}
}
