package nola_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// startTyped starts an in-process cluster of n servers on an in-memory
// store for the typed examples.
func startTyped(n int, types map[string]nola.Factory) (*nola.Cluster, func()) {
	store := memkv.New(rt.NewReal(), memkv.Options{})
	c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
		Servers: n, Store: store, Types: types,
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

// Requests and results are plain Go types; JSON is the default encoding.
type (
	Add   struct{ By int64 }
	Count struct{ N int64 }
)

// Tally is a typed actor: a struct whose methods handle operations. The
// embedded Router dispatches on the operation name, so there is no switch.
type Tally struct {
	nola.Router
	n int64 // in memory: a new activation starts at 0
}

// NewTally is Tally's Factory: it registers the methods.
func NewTally(nola.Ref) (nola.Actor, error) {
	t := &Tally{}
	nola.Handle(&t.Router, "add", t.Add)
	nola.Handle(&t.Router, "get", t.Get)
	return t, nil
}

func (t *Tally) Add(_ *nola.Context, a Add) (Count, error) {
	t.n += a.By
	return Count{t.n}, nil
}

func (t *Tally) Get(*nola.Context, struct{}) (Count, error) { return Count{t.n}, nil }

// A typed actor called with typed requests; a raw caller (the CLI, HTTP)
// sends the JSON itself, and an unknown operation is a bad request that
// lists the known ones.
func ExampleRouter() {
	c, stop := startTyped(2, map[string]nola.Factory{"tally": NewTally})
	defer stop()
	ctx := context.Background()
	ref := nola.Ref{Namespace: "demo", ID: "t1", Type: "tally"}

	got, err := nola.Call[Add, Count](ctx, c.Client(), ref, "add", Add{By: 2})
	fmt.Println(got.N, err)
	raw, err := c.Client().Invoke(ctx, "demo", "t1", "tally", "add", []byte(`{"By":40}`))
	fmt.Println(string(raw), err)
	_, err = c.Client().Invoke(ctx, "demo", "t1", "tally", "reset", nil)
	fmt.Println(nola.CodeOf(err), err)
	// Output:
	// 2 <nil>
	// {"N":42} <nil>
	// bad_request nola: bad_request: t1: unknown operation "reset" (known: add, get)
}

// A typed KV key: the value is encoded by the key's codec (JSON), read and
// written in the invocation's transaction like any KV entry.
func ExampleKey() {
	type Profile struct {
		Name   string
		Visits int
	}
	profile := nola.Key[Profile]{Name: "profile"}
	newVisitor := func(nola.Ref) (nola.Actor, error) {
		r := &nola.Router{}
		nola.Handle(r, "visit", func(cx *nola.Context, name string) (Profile, error) {
			p, found, err := profile.Get(cx)
			if err != nil {
				return Profile{}, err
			}
			if !found {
				p.Name = name
			}
			p.Visits++
			return p, profile.Put(cx, p)
		})
		return r, nil
	}
	c, stop := startTyped(1, map[string]nola.Factory{"visitor": newVisitor})
	defer stop()
	ref := nola.Ref{Namespace: "demo", ID: "v1", Type: "visitor"}
	for _, name := range []string{"Ada", "ignored once set"} {
		p, err := nola.Call[string, Profile](context.Background(), c.Client(), ref, "visit", name)
		fmt.Printf("%+v %v\n", p, err)
	}
	// Output:
	// {Name:Ada Visits:1} <nil>
	// {Name:Ada Visits:2} <nil>
}

// Router.SetTimer arms a timer on a typed operation: the request is
// encoded now, and a wrong type or unknown operation fails now instead of
// when the timer fires.
func ExampleRouter_SetTimer() {
	type Wake struct{ Msg string }
	rang := make(chan string, 1)
	newAlarm := func(nola.Ref) (nola.Actor, error) {
		r := &nola.Router{}
		nola.Handle(r, "arm", func(cx *nola.Context, w Wake) (struct{}, error) {
			if err := r.SetTimer(cx, "wake", 10*time.Millisecond, 0, "ring", 7); err != nil {
				fmt.Println("refused:", err)
			}
			return struct{}{}, r.SetTimer(cx, "wake", 10*time.Millisecond, 0, "ring", w)
		})
		nola.Handle(r, "ring", func(_ *nola.Context, w Wake) (struct{}, error) {
			rang <- w.Msg
			return struct{}{}, nil
		})
		return r, nil
	}
	c, stop := startTyped(1, map[string]nola.Factory{"alarm": newAlarm})
	defer stop()
	ref := nola.Ref{Namespace: "demo", ID: "a1", Type: "alarm"}
	if _, err := nola.Call[Wake, struct{}](context.Background(), c.Client(), ref, "arm", Wake{"good morning"}); err != nil {
		panic(err)
	}
	fmt.Println(<-rang)
	// Output:
	// refused: nola: timer "wake": operation "ring" takes nola_test.Wake, not int
	// good morning
}

// One actor calls another with a typed call: inside an actor, its
// *Context is both the context and the Caller. The call stays in the
// caller's namespace.
func ExampleCall_actorToActor() {
	type Order struct {
		Item string
		Qty  int64
	}
	newShop := func(nola.Ref) (nola.Actor, error) {
		r := &nola.Router{}
		nola.Handle(r, "order", func(cx *nola.Context, o Order) (string, error) {
			stock := nola.Ref{ID: "stock-" + o.Item, Type: "tally"}
			left, err := nola.Call[Add, Count](cx, cx, stock, "add", Add{By: -o.Qty})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d %s ordered, %d in stock", o.Qty, o.Item, left.N), nil
		})
		return r, nil
	}
	c, stop := startTyped(2, map[string]nola.Factory{"tally": NewTally, "shop": newShop})
	defer stop()
	ctx := context.Background()
	stock := nola.Ref{Namespace: "demo", ID: "stock-pears", Type: "tally"}
	if _, err := nola.Call[Add, Count](ctx, c.Client(), stock, "add", Add{By: 10}); err != nil {
		panic(err)
	}
	shop := nola.Ref{Namespace: "demo", ID: "shop", Type: "shop"}
	msg, err := nola.Call[Order, string](ctx, c.Client(), shop, "order", Order{"pears", 3})
	fmt.Println(msg, err)
	// Output:
	// 3 pears ordered, 7 in stock <nil>
}
