package nola_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// counter keeps its count in memory: a new activation starts again at 0.
type counter struct{ n int64 }

func (c *counter) Invoke(_ *nola.Context, op string, _ []byte) ([]byte, error) {
	switch op {
	case "inc":
		c.n++
		return strconv.AppendInt(nil, c.n, 10), nil
	case "get":
		return strconv.AppendInt(nil, c.n, 10), nil
	}
	return nil, nola.InvocationError(nola.CodeBadRequest, "unknown operation "+op)
}

// newCluster starts servers in this process on an in-memory store.
func newCluster(servers int, types map[string]nola.Factory) (*nola.Cluster, func()) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	// Runtimes left unset are the real one.
	c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
		Servers: servers,
		Store:   store,
		Types:   types,
		// A short lease, so that the crash example moves its actor soon.
		Configure: func(_ int, cfg *nola.ServerConfig) { cfg.LeaseTTL = time.Second },
	})
	if err != nil {
		panic(err)
	}
	return c, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
		_ = store.Close()
	}
}

// Three servers in one process: a call names the actor, never a server.
func Example() {
	c, stop := newCluster(3, map[string]nola.Factory{
		"counter": func(nola.Ref) (nola.Actor, error) { return &counter{}, nil },
	})
	defer stop()
	ctx := context.Background()
	for range 3 {
		out, err := c.Client().Invoke(ctx, "demo", "alice", "counter", "inc", nil)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(out))
	}
	// Output:
	// 1
	// 2
	// 3
}

// A durable counter keeps its state in the actor's KV: each invocation is
// one transaction, committed (fenced) before the answer is released.
func ExampleContext_Put() {
	durable := nola.FuncActor(func(cx *nola.Context, op string, _ []byte) ([]byte, error) {
		v, _, err := cx.Get([]byte("n"))
		if err != nil {
			return nil, err
		}
		n, _ := strconv.Atoi(string(v))
		if op == "inc" {
			n++
			if err := cx.Put([]byte("n"), []byte(strconv.Itoa(n))); err != nil {
				return nil, err
			}
		}
		return []byte(strconv.Itoa(n)), nil
	})
	c, stop := newCluster(2, map[string]nola.Factory{
		"kvcounter": func(nola.Ref) (nola.Actor, error) { return durable, nil },
	})
	defer stop()
	ctx := context.Background()
	cl := c.Client()
	_, _ = cl.Invoke(ctx, "demo", "k", "kvcounter", "inc", nil)
	_, _ = cl.Invoke(ctx, "demo", "k", "kvcounter", "inc", nil)
	// The server that hosts k crashes: its in-memory state is gone, its KV
	// is not. The actor answers again from the survivor once the lease of
	// the crashed server has run out.
	c.Crash(c.Host("demo", "k"))
	for {
		out, err := cl.Invoke(ctx, "demo", "k", "kvcounter", "get", nil)
		if err == nil {
			fmt.Println("after the crash:", string(out))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Output:
	// after the crash: 2
}

// An actor calls another by name through its Context; the call is an
// effect of the invocation, fenced like a KV commit.
func ExampleContext_Invoke() {
	c, stop := newCluster(2, map[string]nola.Factory{
		"counter": func(nola.Ref) (nola.Actor, error) { return &counter{}, nil },
		"front": func(nola.Ref) (nola.Actor, error) {
			return nola.FuncActor(func(cx *nola.Context, op string, payload []byte) ([]byte, error) {
				out, err := cx.Invoke(string(payload), "counter", op, nil)
				if err != nil {
					return nil, err
				}
				return append([]byte("counter says "), out...), nil
			}), nil
		},
	})
	defer stop()
	out, err := c.Client().Invoke(context.Background(), "demo", "f", "front", "inc", []byte("bob"))
	fmt.Println(string(out), err)
	// Output:
	// counter says 1 <nil>
}

// A timer invokes an operation of its own actor later; like every effect
// it stops at the server's lease deadline.
func ExampleContext_SetTimer() {
	ticked := make(chan string, 1)
	c, stop := newCluster(1, map[string]nola.Factory{
		"alarm": func(nola.Ref) (nola.Actor, error) {
			return nola.FuncActor(func(cx *nola.Context, op string, payload []byte) ([]byte, error) {
				switch op {
				case "arm":
					return nil, cx.SetTimer("wake", 10*time.Millisecond, 0, "ring", payload)
				case "ring":
					ticked <- string(payload)
				}
				return nil, nil
			}), nil
		},
	})
	defer stop()
	if _, err := c.Client().Invoke(context.Background(), "demo", "a", "alarm", "arm", []byte("good morning")); err != nil {
		panic(err)
	}
	fmt.Println(<-ticked)
	// Output:
	// good morning
}

// Errors carry a stable code; Retryable says the operation certainly did
// not run.
func ExampleCodeOf() {
	c, stop := newCluster(1, map[string]nola.Factory{
		"counter": func(nola.Ref) (nola.Actor, error) { return &counter{}, nil },
	})
	defer stop()
	_, err := c.Client().Invoke(context.Background(), "demo", "x", "counter", "explode", nil)
	var ne *nola.Error
	fmt.Println(nola.CodeOf(err), errors.As(err, &ne), nola.IsRetryable(err))
	// Output:
	// bad_request true false
}
