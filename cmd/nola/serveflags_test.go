package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// Bad flag values are reported before the port is bound: the listen
// address here is taken, so a server that bound first would report
// "address already in use" instead.
func TestBadServeFlagsBeforeListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "bogus"}, "--store"},
		{[]string{"--etcd-quota-bytes", "0"}, "--etcd-quota-bytes"},
		{[]string{"--ns-token", "nsonly"}, "--ns-token"},
		{[]string{"--ns-token", "ns=t"}, "--api-token"},
		{[]string{"--store", "memory", "--etcd-endpoints", "127.0.0.1:2379"}, "Store.Endpoints"},
		{[]string{"--etcd-ca", "ca.pem"}, "Store.Endpoints"},
		{[]string{"--memory-budget", "-1"}, "--memory-budget"},
		{[]string{"--shed-mean-factor", "0.5"}, "--shed-mean-factor"},
		{[]string{"--shed-mean-factor", "NaN"}, "--shed-mean-factor"},
		{[]string{"--shed-per-round", "0"}, "--shed-per-round"},
		{[]string{"--locality-sample", "0"}, "--locality-sample"},
		{[]string{"--locality-sample", "2000000"}, "--locality-sample"},
		{[]string{"--locality-per-round", "-1"}, "--locality-per-round"},
		{[]string{"--locality-interval", "-1s"}, "--locality-interval"},
		{[]string{"--store", "memory", "--placement-weights", "1,2"}, "--placement-weights"},
		{[]string{"--store", "memory", "--placement-weights", "1,x,1"}, "--placement-weights"},
		{[]string{"--store", "memory", "--placement-weights", "1,-1,1"}, "--placement-weights"},
		{[]string{"--store", "memory", "--placement-weights", "0,0,0"}, "--placement-weights"},
		{[]string{"--wasm-engine-idle", "0"}, "wasm-engine-idle"},
		{[]string{"--wasm-engine-idle", "-1s"}, "wasm-engine-idle"},
	} {
		args := append([]string{"--listen", taken.Addr().String()}, c.args...)
		err := runServe(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "in use") {
			t.Errorf("serve %v: err = %v, want one naming %s", c.args, err, c.want)
		}
		if !errors.Is(err, errUsage) {
			t.Errorf("serve %v: err %T is not a usage error", c.args, err)
		}
	}
}

// --wasm-engine-idle reaches the node's WASM options.
func TestWASMEngineIdleFlag(t *testing.T) {
	c := serveConfig{store: "memory", registry: "store", wasmEngineIdle: 3 * time.Second}
	o, err := c.nodeOptions(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if o.WASM == nil || o.WASM.EngineIdle != 3*time.Second {
		t.Fatalf("WASM options %+v, want EngineIdle 3s", o.WASM)
	}
}
