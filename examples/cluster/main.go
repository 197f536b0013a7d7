// Command cluster embeds nola: it starts three servers in one process on an
// in-memory store, calls a counter actor and a durable KV counter, shows
// which server hosts them, then crashes that server and shows the actors
// answering again from a survivor once its lease has run out.
//
//	go run ./examples/cluster
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := memkv.New(rt.NewReal(), memkv.Options{})
	defer store.Close()
	const ttl = 2 * time.Second
	c, err := nola.NewCluster(ctx, nola.ClusterConfig{
		Servers:   3,
		Store:     store,
		Types:     actors.Types(),
		Configure: func(_ int, cfg *nola.ServerConfig) { cfg.LeaseTTL = ttl },
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := c.Shutdown(sctx); err != nil {
			fmt.Fprintln(os.Stderr, "shutdown:", err)
		}
	}()
	cl := c.Client()
	call := func(id, typ, op string) string {
		b, err := cl.Invoke(ctx, "demo", id, typ, op, nil)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}

	fmt.Println("nola: 3 servers in one process, in-memory store, lease TTL", ttl)
	for range 3 {
		fmt.Printf("counter/demo-counter inc -> %s   (hosted on s%d)\n", call("demo-counter", "counter", "inc"), c.Host("demo", "demo-counter"))
		fmt.Printf("kvcounter/demo-kv   inc -> %s   (hosted on s%d)\n", call("demo-kv", "kvcounter", "inc"), c.Host("demo", "demo-kv"))
	}
	fmt.Printf("caller/demo-caller calls counter/demo-counter -> %s\n",
		string(must(cl.Invoke(ctx, "demo", "demo-caller", "caller", "call", []byte("counter/demo-counter/inc")))))

	host := c.Host("demo", "demo-counter")
	fmt.Printf("\ncrashing s%d (no release: its actors move once its lease expires)\n", host)
	c.Crash(host)
	start := time.Now()
	for {
		b, err := cl.Invoke(ctx, "demo", "demo-counter", "counter", "inc", nil)
		if err == nil {
			fmt.Printf("counter/demo-counter inc -> %s after %v   (in-memory state reset: a new activation on s%d)\n",
				b, time.Since(start).Round(10*time.Millisecond), c.Host("demo", "demo-counter"))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("kvcounter/demo-kv   inc -> %s   (durable KV kept; on s%d)\n", call("demo-kv", "kvcounter", "inc"), c.Host("demo", "demo-kv"))
	return nil
}

func must(b []byte, err error) []byte {
	if err != nil {
		log.Fatal(err)
	}
	return b
}
