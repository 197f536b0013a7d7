package modules_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// rangeCounting counts the store's range reads.
type rangeCounting struct {
	kv.Store
	ranges atomic.Int64
}

func (s *rangeCounting) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	s.ranges.Add(1)
	return s.Store.Range(ctx, r)
}

// chunkWriter records each write and how many range reads preceded it.
type chunkWriter struct {
	s      *rangeCounting
	buf    bytes.Buffer
	writes []int   // length of each write
	reads  []int64 // range reads done before each write
	failAt int     // fail the write with this index (-1: never)
}

var errWriter = errors.New("writer gone")

func (w *chunkWriter) Write(b []byte) (int, error) {
	if len(w.writes) == w.failAt {
		return 0, errWriter
	}
	w.writes = append(w.writes, len(b))
	w.reads = append(w.reads, w.s.ranges.Load())
	return w.buf.Write(b)
}

// Issue 10, finding 5: a module download streams, a chunk per store read
// and write, rather than reading the whole module first; a writer that
// fails stops the reads; a corrupt chunk is reported (after the bytes
// before it were written).
func TestStreamSendsChunkByChunk(t *testing.T) {
	ctx := context.Background()
	inner := newStore(t, kv.Limits{MaxOpsPerTxn: 128, MaxRequestBytes: 2 << 10})
	s := &rangeCounting{Store: inner}
	ms := modules.New(s, modules.Config{ChunkBytes: 1024})
	bin := wasmtest.C(t, "hostile")
	info, err := ms.Put(ctx, "ns", "m", bin, modules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks < 3 {
		t.Fatalf("%d chunks: too few for the test", info.Chunks)
	}
	var started modules.Info
	w := &chunkWriter{s: s, failAt: -1}
	s.ranges.Store(0)
	if err := ms.Stream(ctx, "ns", "m", func(i modules.Info) { started = i }, w); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.buf.Bytes(), bin) || started.Size != len(bin) || started.Chunks != info.Chunks {
		t.Fatalf("streamed %d bytes (start saw %+v), want the module's %d", w.buf.Len(), started, len(bin))
	}
	if len(w.writes) != info.Chunks {
		t.Fatalf("%d writes for %d chunks", len(w.writes), info.Chunks)
	}
	for i, n := range w.writes {
		// Range read i+1 brought chunk i (the manifest is a Get).
		if n > info.ChunkBytes || w.reads[i] != int64(i+1) {
			t.Fatalf("write %d: %d bytes after %d range reads; want ≤ %d bytes after %d", i, n, w.reads[i], info.ChunkBytes, i+1)
		}
	}

	// A writer that fails ends the stream: no further reads.
	s.ranges.Store(0)
	w = &chunkWriter{s: s, failAt: 1}
	if err := ms.Stream(ctx, "ns", "m", nil, w); !errors.Is(err, errWriter) {
		t.Fatalf("failing writer: %v", err)
	}
	if got := s.ranges.Load(); got != 2 {
		t.Fatalf("%d range reads after the writer failed at chunk 1, want 2", got)
	}

	// A corrupt chunk: the chunks before it are written, then ErrCorrupt.
	key := tuple.AppendInt(registry.NewKeyspace("nola").Sub("mod", "ns", "m", "c", info.Hash[:]), 2)
	if _, err := inner.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(key, []byte("garbage"), kv.NoLease)}}); err != nil {
		t.Fatal(err)
	}
	w = &chunkWriter{s: s, failAt: -1}
	if err := ms.Stream(ctx, "ns", "m", nil, w); !errors.Is(err, modules.ErrCorrupt) {
		t.Fatalf("corrupt module: %v", err)
	}
}
