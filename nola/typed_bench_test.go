package nola_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
)

// BenchmarkTypedCall compares one warm in-memory actor called three ways
// in the same binary and cluster: a hand-written switch on raw bytes (the
// floor), the same bytes through a Router's raw handler, and a typed JSON
// Call (encode Add, route, decode, encode Count, decode).
func BenchmarkTypedCall(b *testing.B) {
	c, stop := startTyped(1, map[string]nola.Factory{"raw": benchRawActor, "routed": benchRoutedRaw, "tally": NewTally})
	b.Cleanup(stop)
	ctx := context.Background()
	cl := c.Client()
	rawLoop := func(typ string) func(b *testing.B) {
		return func(b *testing.B) {
			payload := []byte("1")
			if _, err := cl.Call(ctx, nola.Ref{Namespace: "bench", ID: "a-" + typ, Type: typ}, "add", payload); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cl.Call(ctx, nola.Ref{Namespace: "bench", ID: "a-" + typ, Type: typ}, "add", payload); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("raw-switch", rawLoop("raw"))
	b.Run("router-raw", rawLoop("routed"))
	b.Run("typed-json", func(b *testing.B) {
		ref := nola.Ref{Namespace: "bench", ID: "a-tally", Type: "tally"}
		if _, err := nola.Call[Add, Count](ctx, cl, ref, "add", Add{By: 1}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := nola.Call[Add, Count](ctx, cl, ref, "add", Add{By: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRawActor is the floor: a hand-written switch on raw bytes.
func benchRawActor(nola.Ref) (nola.Actor, error) {
	var n int64
	return nola.FuncActor(func(_ *nola.Context, op string, p []byte) ([]byte, error) {
		switch op {
		case "add":
			by, err := strconv.ParseInt(string(p), 10, 64)
			if err != nil {
				return nil, err
			}
			n += by
			return strconv.AppendInt(nil, n, 10), nil
		}
		return nil, nola.InvocationError(nola.CodeBadRequest, "unknown operation "+op)
	}), nil
}

// benchRoutedRaw is benchRawActor behind a Router's raw handler: the
// router's own cost, without a codec.
func benchRoutedRaw(nola.Ref) (nola.Actor, error) {
	var n int64
	r := &nola.Router{}
	r.HandleRaw("add", func(_ *nola.Context, p []byte) ([]byte, error) {
		by, err := strconv.ParseInt(string(p), 10, 64)
		if err != nil {
			return nil, err
		}
		n += by
		return strconv.AppendInt(nil, n, 10), nil
	})
	return r, nil
}

// BenchmarkJSONCodecRoundTrip is what a typed call adds on each side:
// encode one small struct, decode another.
func BenchmarkJSONCodecRoundTrip(b *testing.B) {
	var codec nola.JSONCodec
	b.ReportAllocs()
	for b.Loop() {
		p, _ := codec.Marshal(Add{By: 1})
		var a Add
		if err := codec.Unmarshal(p, &a); err != nil {
			b.Fatal(err)
		}
		r, _ := codec.Marshal(Count{N: a.By})
		var c Count
		if err := codec.Unmarshal(r, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTypedVsRawInterleaved alternates batches of three kinds of
// call, so that all see the same machine load (the sequential
// sub-benchmarks above drift apart on a shared machine): raw bytes to
// benchRawActor (the floor), the same through a Router (dispatch cost),
// raw JSON bytes to the typed Tally (plus the actor-side codec), and a
// typed JSON Call to Tally (plus the caller-side codec). It
// reports each one's ns per call and the ratios to the floor, medians over
// batches. Allocations are in BenchmarkTypedCall.
func BenchmarkTypedVsRawInterleaved(b *testing.B) {
	c, stop := startTyped(1, map[string]nola.Factory{"raw": benchRawActor, "routed": benchRoutedRaw, "tally": NewTally})
	b.Cleanup(stop)
	ctx := context.Background()
	cl := c.Client()
	typed := nola.Ref{Namespace: "bench", ID: "typed", Type: "tally"}
	one, jsonOne := []byte("1"), []byte(`{"By":1}`)
	kinds := []func(){
		func() {
			if _, err := cl.Call(ctx, nola.Ref{Namespace: "bench", ID: "raw", Type: "raw"}, "add", one); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			if _, err := cl.Call(ctx, nola.Ref{Namespace: "bench", ID: "routed", Type: "routed"}, "add", one); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			if _, err := cl.Call(ctx, nola.Ref{Namespace: "bench", ID: "rawjson", Type: "tally"}, "add", jsonOne); err != nil {
				b.Fatal(err)
			}
		},
		func() {
			if _, err := nola.Call[Add, Count](ctx, cl, typed, "add", Add{By: 1}); err != nil {
				b.Fatal(err)
			}
		},
	}
	for _, k := range kinds {
		k()
	}
	const batch = 64
	ns := make([][]float64, len(kinds))
	ratios := make([][]float64, len(kinds))
	for b.Loop() {
		per := make([]float64, len(kinds))
		for i, k := range kinds {
			t0 := time.Now()
			for range batch {
				k()
			}
			per[i] = float64(time.Since(t0)) / batch
			ns[i] = append(ns[i], per[i])
			ratios[i] = append(ratios[i], per[i]/per[0])
		}
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(median(ns[0]), "raw-ns/call")
	b.ReportMetric(median(ns[1]), "routed-ns/call")
	b.ReportMetric(median(ns[2]), "rawjson-ns/call")
	b.ReportMetric(median(ns[3]), "typed-ns/call")
	b.ReportMetric(median(ratios[1]), "routed/raw")
	b.ReportMetric(median(ratios[2]), "rawjson/raw")
	b.ReportMetric(median(ratios[3]), "typed/raw")
}
