// Command bank is an app that embeds nola: a Go actor type of its own
// (account, a balance in the actor's durable KV) served by a nola node.
// Run three processes and they form one cluster on one etcd, the first
// embedding it:
//
//	go run ./examples/bank -listen 127.0.0.1:8081 -etcd-listen 127.0.0.1:2379
//	go run ./examples/bank -listen 127.0.0.1:8082 -join 127.0.0.1:2379
//	go run ./examples/bank -listen 127.0.0.1:8083 -join 127.0.0.1:2379
//
// then call an account through any of them; each answer comes from the
// account's one activation, wherever it lives:
//
//	nola invoke --server http://127.0.0.1:8082 --type account bank alice deposit 10
//	curl -d 5 http://127.0.0.1:8083/v1/ns/bank/actors/alice/invoke/withdraw?type=account
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
)

// account keeps a balance, in cents, in its durable KV: "deposit" and
// "withdraw" take an amount and return the new balance, "balance" returns
// it. A withdrawal past the balance is refused and changes nothing.
type account struct{}

func (account) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	stored, _, err := ctx.Get([]byte("balance"))
	if err != nil {
		return nil, err
	}
	balance, _ := strconv.ParseInt(string(stored), 10, 64)
	amount, err := strconv.ParseInt(string(payload), 10, 64)
	switch {
	case op == "balance":
		return []byte(strconv.FormatInt(balance, 10)), nil
	case op != "deposit" && op != "withdraw":
		return nil, fmt.Errorf("account: unknown operation %q", op)
	case err != nil || amount <= 0:
		return nil, fmt.Errorf("account: %s wants a positive amount, got %q", op, payload)
	case op == "withdraw" && amount > balance:
		return nil, fmt.Errorf("account: cannot withdraw %d, the balance is %d", amount, balance)
	case op == "withdraw":
		amount = -amount
	}
	out := []byte(strconv.FormatInt(balance+amount, 10))
	return out, ctx.Put([]byte("balance"), out)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address of the HTTP API")
	join := flag.String("join", "", "etcd endpoints of the cluster to join (default: run an embedded etcd)")
	etcdListen := flag.String("etcd-listen", "", "client address of the embedded etcd (default: a free loopback port)")
	dataDir := flag.String("data-dir", "./bank-data", "data directory of the embedded etcd")
	ready := flag.String("ready-file", "", "write the API URL and the etcd endpoints to this file once serving")
	flag.Parse()
	if err := run(*listen, *join, *etcdListen, *dataDir, *ready); err != nil {
		log.Fatal(err)
	}
}

func run(listen, join, etcdListen, dataDir, ready string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	store := node.Store{DataDir: dataDir, EtcdListen: etcdListen}
	if join != "" {
		store = node.Store{Endpoints: strings.Split(join, ",")}
	}
	n, err := node.Start(ctx, node.Options{
		Listen: listen, Store: store, LeaseTTL: 2 * time.Second, Logger: logger,
		Types: map[string]nola.Factory{
			"account": func(nola.Ref) (nola.Actor, error) { return account{}, nil },
		},
	})
	if err != nil {
		return err
	}
	endpoints := strings.Join(n.EtcdEndpoints(), ",")
	if endpoints == "" {
		endpoints = join
	}
	logger.Info("bank serving", "url", n.URL(), "etcd", endpoints)
	if ready != "" {
		if err := writeReady(ready, n.URL()+"\n"+endpoints+"\n"); err != nil {
			return errors.Join(err, n.Close())
		}
	}

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(sctx)
}

// writeReady writes the ready file whole: a reader never sees half of it.
func writeReady(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
