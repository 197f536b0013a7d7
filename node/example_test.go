package node_test

import (
	"context"
	"fmt"
	"log"
	"strconv"
	"strings"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// greeter is an app's own Go actor: it counts the greetings it gave.
type greeter struct{ n int }

func (g *greeter) Invoke(_ *nola.Context, op string, payload []byte) ([]byte, error) {
	g.n++
	return []byte("hello " + string(payload) + " #" + strconv.Itoa(g.n)), nil
}

// A node with the app's actor type, on the in-memory store (use the
// default, an embedded etcd, or Store.Endpoints for a real cluster),
// listening on a free loopback port, called over HTTP as a remote caller
// would.
func ExampleStart() {
	ctx := context.Background()
	n, err := node.Start(ctx, node.Options{
		Store: node.Store{Kind: "memory"},
		Types: map[string]nola.Factory{
			"greeter": func(nola.Ref) (nola.Actor, error) { return &greeter{}, nil },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Shutdown(ctx)

	c := httpapi.NewClient(n.URL(), "")
	defer c.Close()
	for _, who := range []string{"ada", "bob"} {
		out, err := c.Invoke(ctx, "demo", "g1", "greeter", "greet", []byte(who))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(out))
	}
	// Output:
	// hello ada #1
	// hello bob #2
}

// Three nodes on one store are one cluster: a call entering through any of
// them reaches the actor's one activation. Here the store is one
// in-memory store shared in the process; separate processes would share an
// etcd (Store.Endpoints, or one node's embedded etcd).
func ExampleStart_cluster() {
	ctx := context.Background()
	store := memkv.New(rt.NewReal(), memkv.Options{})
	defer store.Close()
	var nodes []*node.Node
	for i := range 3 {
		n, err := node.Start(ctx, node.Options{
			ID:    fmt.Sprintf("node%d", i),
			Store: node.Store{KV: store},
			Types: map[string]nola.Factory{
				"greeter": func(nola.Ref) (nola.Actor, error) { return &greeter{}, nil },
			},
		})
		if err != nil {
			log.Fatal(err)
		}
		defer n.Shutdown(ctx)
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		c := httpapi.NewClient(n.URL(), "")
		out, err := c.Invoke(ctx, "demo", "g1", "greeter", "greet", []byte(fmt.Sprint("via node", i)))
		c.Close()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(out))
	}
	// Output:
	// hello via node0 #1
	// hello via node1 #2
	// hello via node2 #3
}

// A stateless worker: any server runs any number of its invocations at
// once — here the one that received the call — with no placement and no
// single activation. It has no KV and no timers; it may call actors.
func ExampleStart_workers() {
	ctx := context.Background()
	n, err := node.Start(ctx, node.Options{
		Store: node.Store{Kind: "memory"},
		Workers: map[string]nola.WorkerFunc{
			"shout": func(_ *nola.WorkerContext, _ string, payload []byte) ([]byte, error) {
				return []byte(strings.ToUpper(string(payload)) + "!"), nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Shutdown(ctx)

	c := httpapi.NewClient(n.URL(), "")
	defer c.Close()
	out, err := c.CallWorker(ctx, "demo", "shout", "run", []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	// Output:
	// HELLO!
}
