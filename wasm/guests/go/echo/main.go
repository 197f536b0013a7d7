//go:build wasip1

// Command echo returns its payload ("echo"), stores it in KV ("put", "get"),
// fails on demand after a KV write ("fail"), panics ("panic"), writes to
// stdout and stderr ("print"), reports the clock and its identity ("now",
// "self"), scans its KV ("scan") and sets or cancels a timer ("timer",
// "untimer"; the timer invokes "tick", counted by "ticks"), probes its
// sandbox ("sandbox": arguments, environment, files, directories) and
// draws random numbers ("rand": math/rand/v2's and crypto/rand's).
package main

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/nolaproject/nola/wasm/guest"
)

var ticks int64

func init() {
	guest.HandleOps(map[string]guest.Op{
		"echo": func(p []byte) ([]byte, error) { return p, nil },
		"put":  func(p []byte) ([]byte, error) { return nil, guest.Put([]byte("last"), p) },
		"get": func([]byte) ([]byte, error) {
			v, _, err := guest.Get([]byte("last"))
			return v, err
		},
		"fail": func([]byte) ([]byte, error) {
			if err := guest.Put([]byte("last"), []byte("from a failed call")); err != nil {
				return nil, err
			}
			return nil, errors.New("echo: asked to fail")
		},
		"panic": func([]byte) ([]byte, error) { panic("echo: asked to panic") },
		"print": func(p []byte) ([]byte, error) {
			fmt.Fprintf(os.Stdout, "out:%s\n", p)
			fmt.Fprintf(os.Stderr, "err:%s\n", p)
			return nil, nil
		},
		"now": func([]byte) ([]byte, error) {
			t, err := guest.Now()
			if err != nil {
				return nil, err
			}
			return guest.Int(t.UnixNano()), nil
		},
		"self": func([]byte) ([]byte, error) {
			ns, id, typ, err := guest.Self()
			return []byte(ns + "/" + id + "/" + typ), err
		},
		"scan": func(prefix []byte) ([]byte, error) {
			kvs, err := guest.ScanPrefix(prefix, 0)
			if err != nil {
				return nil, err
			}
			var parts []string
			for _, kv := range kvs {
				parts = append(parts, string(kv.Key)+"="+string(kv.Value))
			}
			return []byte(strings.Join(parts, ",")), nil
		},
		"timer": func(p []byte) ([]byte, error) {
			d, err := time.ParseDuration(string(p))
			if err != nil {
				return nil, err
			}
			return nil, guest.SetTimer("tick", d, d, "tick", nil)
		},
		"untimer": func([]byte) ([]byte, error) {
			ok, err := guest.CancelTimer("tick")
			return []byte(fmt.Sprint(ok)), err
		},
		"rand": func([]byte) ([]byte, error) {
			return []byte(fmt.Sprintf("math=%x crypto=%s", rand.Uint64(), crand.Text())), nil
		},
		"tick":  func([]byte) ([]byte, error) { ticks++; return nil, nil },
		"ticks": func([]byte) ([]byte, error) { return guest.Int(ticks), nil },
		"sandbox": func(p []byte) ([]byte, error) {
			var out []string
			out = append(out, fmt.Sprintf("args=%d env=%d", len(os.Args), len(os.Environ())))
			if _, err := os.ReadFile(string(p)); err != nil {
				out = append(out, "read: "+err.Error())
			} else {
				out = append(out, "read: ok")
			}
			if _, err := os.ReadDir("/"); err != nil {
				out = append(out, "readdir: "+err.Error())
			} else {
				out = append(out, "readdir: ok")
			}
			if err := os.WriteFile("/tmp/nola-wasm-escape", []byte("x"), 0o644); err != nil {
				out = append(out, "write: "+err.Error())
			} else {
				out = append(out, "write: ok")
			}
			return []byte(strings.Join(out, "; ")), nil
		},
		"log": func(p []byte) ([]byte, error) {
			guest.Log("warn", string(p))
			guest.ConsoleLog(string(p))
			return nil, nil
		},
	})
}

func main() {}
