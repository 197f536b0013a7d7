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

// engineDirs are the packages that must run unchanged under the simulator,
// relative to the module root. Runtime implementations (rt, rt/simrt) and
// real-network transports live elsewhere and are exempt.
var engineDirs = []string{
	"nola",
	"registry",
	"registry/kv",
	"registry/memkv",
	"registry/tuple",
	"faultinject",
	"registry/modules",
	"wasm",
	"wasm/abi",
	"wasm/instrument",
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
// goroutines, channels or the network other than through rt.Runtime.
func TestEngineUsesOnlyRuntime(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	files := 0
	var violations []string
	for _, d := range engineDirs {
		matches, err := filepath.Glob(filepath.Join(root, d, "*.go"))
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
	if files < 15 {
		t.Fatalf("scanned only %d files: the engine directory list is stale", files)
	}
	if len(violations) > 0 {
		t.Fatalf("engine code bypasses the runtime:\n%s", strings.Join(violations, "\n"))
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
