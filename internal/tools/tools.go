//go:build tools

// Package tools pins what the repository builds but does not import:
// etcd's own server (cmd/jepsen-lite builds it with `go build
// go.etcd.io/etcd/server/v3`), so that go mod tidy keeps its
// dependencies in go.sum.
package tools

import _ "go.etcd.io/etcd/server/v3/etcdmain"
