package rt_test

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
)

// exemptDirs are the module's packages that are not engine code, each with
// the reason it may reach the real world. Every other package holding a
// non-test Go file is engine code and is scanned: the scan fails closed, so
// a new package is held to the runtime unless it is exempted here, on
// purpose, with a reason. A path ending in "/" exempts everything below it.
var exemptDirs = map[string]string{
	"rt":                       "the production runtime itself",
	"rt/simrt":                 "the deterministic runtime itself",
	"httpapi":                  "the real network transport and HTTP API",
	"storeless":                "store-less mode: HTTP health probes, DNS and HTTP routing over the real network (not simulated; it gives no guarantee to check)",
	"registry/etcdkv":          "the etcd store client and embedded etcd",
	"registry/etcdkv/etcdtest": "starts real etcd for tests",
	"registry/kvtest":          "store conformance suite, run by each store's tests",
	"linearizability":          "checks finished histories after a run",
	"model":                    "the protocol model checker, not engine code",
	"sim":                      "the simulator harness that drives rt/simrt",
	"internal/simtest":         "simulator test helpers",
	"internal/tools":           "build-tagged pin of tools the repository builds",
	"internal/nodehook":        "carries test-only server settings to node.Start",
	"node":                     "runs a networked server: listener, etcd, signals of the OS",
	"faultinject/exectrace":    "reads real processes' execution logs",
	"faultinject/nemesis":      "attacks real processes and sockets",
	"wasm/guest":               "guest SDK, compiled to WebAssembly",
	"wasm/guests/":             "guest programs, compiled to WebAssembly",
	"wasm/wasmtest":            "builds guests with the Go toolchain for tests",
	"bench/":                   "benchmark programs",
	"cmd/":                     "programs: flags, signals, processes, the network",
	"examples/":                "example programs",
	"model/cmd/":               "the model checker's command",
	"sim/cmd/":                 "the simulator's command",
}

// mustScan are packages the scan must reach: a walk that finds no engine
// (a moved module root, an exemption too broad) fails instead of passing
// vacuously.
var mustScan = []string{
	"nola", "registry", "registry/kv", "registry/memkv", "registry/tuple",
	"faultinject", "wasm", "wasm/abi", "wasm/instrument", "wasm/modules",
}

// forbiddenCalls are package functions that reach real time or spawn
// unobservable timers.
var forbiddenCalls = map[string][]string{
	"time":    {"Now", "Sleep", "After", "AfterFunc", "NewTimer", "NewTicker", "Tick", "Since", "Until"},
	"context": {"WithTimeout", "WithDeadline", "WithTimeoutCause", "WithDeadlineCause", "AfterFunc"},
	"sync":    {"NewCond", "OnceFunc"},
}

// forbiddenImports reach randomness or the network directly.
var forbiddenImports = []string{"math/rand", "math/rand/v2", "crypto/rand", "net", "net/http", "os/exec", "os/signal"}

// scanFile returns the determinism violations in one Go source file.
func scanFile(fset *token.FileSet, f *ast.File) []string {
	var out []string
	report := func(n ast.Node, what string) {
		out = append(out, fmt.Sprintf("%s: %s", fset.Position(n.Pos()), what))
	}
	names := map[string]string{} // local name -> import path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if slices.Contains(forbiddenImports, path) {
			report(imp, "imports "+path)
		}
		local := filepath.Base(path)
		if path == "math/rand/v2" {
			local = "rand"
		}
		if imp.Name != nil {
			local = imp.Name.Name
		}
		names[local] = path
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			// Implementing context.Context needs Done() <-chan struct{};
			// its body is still scanned.
			if n.Name.Name == "Done" && n.Recv != nil {
				ast.Inspect(n.Body, func(m ast.Node) bool {
					if _, ok := m.(*ast.UnaryExpr); ok && m.(*ast.UnaryExpr).Op == token.ARROW {
						report(m, "channel receive")
					}
					return true
				})
				return false
			}
		case *ast.GoStmt:
			report(n, "bare go statement (use Runtime.Go)")
		case *ast.SelectStmt:
			report(n, "select statement (block through the runtime)")
		case *ast.SendStmt:
			report(n, "channel send")
		case *ast.UnaryExpr:
			if n.Op == token.ARROW {
				report(n, "channel receive")
			}
		case *ast.ChanType:
			report(n, "channel type")
		case *ast.SelectorExpr:
			id, ok := n.X.(*ast.Ident)
			if !ok {
				return true
			}
			path := names[id.Name]
			if slices.Contains(forbiddenCalls[path], n.Sel.Name) {
				report(n, path+"."+n.Sel.Name)
			}
			if path == "sync" && (n.Sel.Name == "WaitGroup" || n.Sel.Name == "Cond") {
				report(n, "sync."+n.Sel.Name+" (blocks outside the runtime)")
			}
		}
		return true
	})
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// TestEngineUsesOnlyRuntime fails if engine code reaches time, randomness,
// goroutines, channels or the network other than through rt.Runtime. Engine
// code is every package of the module that exemptDirs does not exempt.
func TestEngineUsesOnlyRuntime(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	files := 0
	var violations, scanned []string
	for _, d := range packageDirs(t, root) {
		if exempt, _ := classify(d); exempt {
			continue
		}
		scanned = append(scanned, d)
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(d), "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range matches {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files++
			violations = append(violations, scanFile(fset, f)...)
		}
	}
	for _, d := range mustScan {
		if !slices.Contains(scanned, d) {
			t.Errorf("package %s was not scanned (gone, moved or exempted?): update mustScan or exemptDirs", d)
		}
	}
	if files < 15 {
		t.Fatalf("scanned only %d files in %v", files, scanned)
	}
	if len(violations) > 0 {
		t.Fatalf("engine code bypasses the runtime:\n%s", strings.Join(violations, "\n"))
	}
}

// packageDirs returns every directory of the module (relative, with "/")
// that holds a non-test Go file.
func packageDirs(t *testing.T, root string) []string {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			seen[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// classify says whether dir is exempt from the scan, and why.
func classify(dir string) (exempt bool, why string) {
	if why, ok := exemptDirs[dir]; ok {
		return true, why
	}
	for prefix, why := range exemptDirs {
		if strings.HasSuffix(prefix, "/") && strings.HasPrefix(dir, prefix) {
			return true, why
		}
	}
	return false, ""
}

// TestScanFailsClosed checks the classification itself: an unknown
// package is scanned, every exemption gives a reason, and no package the
// scan must reach is exempt.
func TestScanFailsClosed(t *testing.T) {
	for _, d := range []string{"newpkg", "nola/newsub", "registry/newstore", "internal/newhelper"} {
		if exempt, why := classify(d); exempt {
			t.Errorf("classify(%s) = exempt (%q); an unknown package must be scanned", d, why)
		}
	}
	for d, why := range exemptDirs {
		if strings.TrimSpace(why) == "" {
			t.Errorf("exemption of %s gives no reason", d)
		}
	}
	for _, d := range mustScan {
		if exempt, why := classify(d); exempt {
			t.Errorf("%s must be scanned but is exempt: %s", d, why)
		}
	}
	root := moduleRoot(t)
	if dirs := packageDirs(t, root); len(dirs) < 20 {
		t.Fatalf("found only %d packages under %s", len(dirs), root)
	}
}

// The scanner itself must catch every kind of violation.
func TestEngineScanCatchesViolations(t *testing.T) {
	src := `package bad
import (
	"context"
	mr "math/rand"
	"net"
	"sync"
	t "time"
)
func f(ctx context.Context, ch chan int) {
	_ = t.Now()
	t.Sleep(1)
	<-t.After(1)
	go f(ctx, ch)
	select {}
	ch <- 1
	_, _ = context.WithTimeout(ctx, 1)
	var wg sync.WaitGroup
	_ = wg
	_ = mr.Int()
	_ = net.IPv4len
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "bad.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(scanFile(fset, f), "\n")
	for _, want := range []string{
		"imports math/rand", "imports net", "time.Now", "time.Sleep", "time.After",
		"channel receive", "bare go statement", "select statement", "channel send",
		"context.WithTimeout", "sync.WaitGroup", "channel type",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("scanner missed %q; it reported:\n%s", want, got)
		}
	}
}
