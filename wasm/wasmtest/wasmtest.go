// Package wasmtest gives tests and benchmarks the example guests, built
// from the sources in this repository: C guests from their committed .wasm
// files (rebuilt by `make guests`), Go guests compiled at test time with
// the standard toolchain (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared) and
// cached on disk by a hash of everything they are built from.
package wasmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// Root returns the repository root (from this file's location).
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("wasmtest: cannot locate the source tree")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CGuests and GoGuests name the example guests.
var (
	CGuests  = []string{"counter", "kvcounter", "echo", "caller", "hostile", "ticker", "kvnotify", "hostfn"}
	GoGuests = []string{"counter", "kvcounter", "echo", "caller"}
)

// CompilationCache returns a wazero compilation cache kept on disk under
// the user's cache directory, so that test and benchmark processes compile
// each module once per machine rather than once per process (a Go guest
// takes ~0.8 s to compile, ~9 s under the race detector). Without a cache
// directory it returns an in-memory cache.
func CompilationCache() wazero.CompilationCache {
	dir, err := os.UserCacheDir()
	if err == nil {
		if c, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "nola-wazero")); err == nil {
			return c
		}
	}
	return wazero.NewCompilationCache()
}

// C returns the committed module of C guest name (wasm/guests/c/name.wasm).
func C(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), "wasm", "guests", "c", name+".wasm"))
	if err != nil {
		tb.Fatalf("wasmtest: C guest %s: %v (run `make guests` with clang installed)", name, err)
	}
	return b
}

// Go returns Go guest name (wasm/guests/go/name), building it if the cache
// has no build of its current sources.
func Go(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := BuildGo(name)
	if err != nil {
		tb.Fatalf("wasmtest: %v", err)
	}
	return b
}

// BuildGo builds Go guest name, or returns the cached build of the same
// sources and toolchain.
func BuildGo(name string) ([]byte, error) {
	root := Root()
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	version, err := exec.Command(goBin, "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOVERSION: %w", err)
	}
	key, err := sourceHash(root, name, strings.TrimSpace(string(version)))
	if err != nil {
		return nil, err
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "nola-wasm-guests")
	out := filepath.Join(dir, name+"-"+key[:24]+".wasm")
	if b, err := os.ReadFile(out); err == nil {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, name+"-*.tmp")
	if err != nil {
		return nil, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", tmp.Name(), "./wasm/guests/go/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build Go guest %s: %w\n%s", name, err, msg)
	}
	// Concurrent builders (parallel test binaries) write the same bytes;
	// the rename is atomic either way.
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	// go test puts its own GOROOT/bin first in PATH; GOROOT in the
	// environment covers other callers that have no go in PATH.
	root := os.Getenv("GOROOT")
	if root == "" {
		return "", errors.New("no go tool in PATH, and GOROOT is not set")
	}
	p := filepath.Join(root, "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no go tool in PATH or GOROOT: %w", err)
	}
	return p, nil
}

// sourceHash hashes everything a Go guest is built from.
func sourceHash(root, name, version string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", version, name)
	var files []string
	for _, d := range []string{"wasm/guest", "wasm/abi", "wasm/guests/go/" + name} {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && strings.HasSuffix(p, ".go") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash Go guest %s: %w", name, err)
		}
	}
	files = append(files, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	slices.Sort(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
