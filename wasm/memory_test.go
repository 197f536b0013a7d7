package wasm_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

const page = 64 << 10

// hostileMinBytes is the initial linear memory of hostile-c, read from a
// host's accounting.
func hostileMinBytes(t *testing.T) int64 {
	e := newEnv(t, envOpts{})
	e.putGuests()
	e.must("probe", "hostile-c", "inc", nil)
	return e.hosts[0].MemoryBytes() - hostileOverhead(t)
}

// hostileOverhead is what the Host charges an instance of hostile-c
// besides its linear memory: InstanceOverhead and its table.
func hostileOverhead(t *testing.T) int64 {
	// Rewritten as the Host does by default: its data in the image.
	rw, err := instrument.Rewrite(wasmtest.C(t, "hostile"), instrument.Options{MemoryImage: true, ExportGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	return wasm.InstanceOverhead + rw.InstanceBytes
}

// Finding 11 of issue 10: actors that each grew to 16 MiB took a server to
// 5 GB while it reported 355 KB. Now the Host charges every instance its
// linear memory plus InstanceOverhead against Config.MemoryLimit, before
// allocating: growth past the limit fails (memory.grow returns -1) and an
// activation that does not fit is refused with a typed error; the server
// reports the memory, and gives it back when the actors go.
func TestMemoryLimitCapsAndCountsLinearMemory(t *testing.T) {
	minBytes := hostileMinBytes(t)
	for _, heap := range []bool{false, true} {
		t.Run(fmt.Sprintf("heap=%v", heap), func(t *testing.T) { testMemoryLimit(t, minBytes, heap) })
	}
}

func testMemoryLimit(t *testing.T, minBytes int64, heap bool) {
	const maxPages = 16 // per instance: 1 MiB
	over := hostileOverhead(t)
	full := int64(maxPages*page + over)
	// Three actors grow to the full 1 MiB; the fourth fits its
	// activation and two pages more; then nothing fits.
	limit := 3*full + over + minBytes + 2*page
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.MemoryLimit, c.HeapMemory = limit, heap }})
	e.put("hostile-c", wasmtest.C(t, "hostile"), modules.Options{MaxMemoryPages: maxPages})
	h, srv := e.hosts[0], e.c.Server(0)

	var want int64
	for i := range 4 {
		got := e.must(fmt.Sprint("a", i), "hostile-c", "bomb", nil)
		pages, err := strconv.ParseInt(got, 10, 64)
		if err != nil {
			t.Fatalf("bomb answered %q", got)
		}
		if i < 3 && pages != maxPages {
			t.Fatalf("actor %d grew to %d pages under the limit, want %d", i, pages, maxPages)
		}
		want += pages*page + over
		if m := h.MemoryBytes(); m != want {
			t.Fatalf("after actor %d: host charges %d bytes, want %d", i, m, want)
		}
	}
	if want != limit {
		t.Fatalf("the four actors hold %d bytes, want exactly the limit %d (the fourth grew to %d bytes)", want, limit, want-3*full-over)
	}
	// The server counts it (besides its own ~1 KiB per activation).
	if got := srv.Stats().MemoryBytes; got < want || got > want+64<<10 {
		t.Fatalf("server reports %d bytes of memory, want the host's %d plus a little", got, want)
	}

	// Past the limit: activations are refused, typed, and charge nothing.
	for i := range 3 {
		_, err := e.invoke(fmt.Sprint("b", i), "hostile-c", "inc", nil)
		ne := wantCode(t, err, nola.CodeUnavailable)
		if !errors.Is(err, nola.ErrUnavailable) || ne.Retryable || !strings.Contains(ne.Message, "--wasm-memory-limit") {
			t.Fatalf("refused activation: %+v", ne)
		}
		if m := h.MemoryBytes(); m != want {
			t.Fatalf("a refused activation changed the charge: %d, want %d", m, want)
		}
	}
	// A running actor's growth is refused too: "big" cannot allocate and
	// answers with the typed error instead of its own.
	_, err := e.invoke("a3", "hostile-c", "big", []byte(strconv.Itoa(8*page)))
	t.Log(wantCode(t, err, nola.CodeUnavailable))
	if st := h.Stats(); st.MemoryBytes > limit || st.Instances != 4 {
		t.Fatalf("after refused growth: %+v", st)
	}

	// Going away gives the memory back.
	if err := e.c.Shutdown(e.ctx); err != nil {
		t.Fatal(err)
	}
	if st := h.Stats(); st.MemoryBytes != 0 || st.Instances != 0 {
		t.Fatalf("after the actors were released: %+v", st)
	}
}

// Idle eviction closes the instance and returns its memory.
func TestMemoryIsReleasedAtEviction(t *testing.T) {
	e := newEnv(t, envOpts{server: func(c *nola.ServerConfig) { c.IdleTimeout = 20 * time.Millisecond }})
	e.putGuests()
	h, srv := e.hosts[0], e.c.Server(0)
	e.must("a", "hostile-c", "big", []byte(strconv.Itoa(4*page)))
	// Wait for the eviction (bounded): what is checked is the accounting
	// after it, not when it happens.
	for deadline := time.Now().Add(30 * time.Second); h.Stats().Instances > 0 || srv.Stats().Evicted == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("not evicted: %+v", h.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := h.MemoryBytes(); m != 0 {
		t.Fatalf("host charges %d bytes with no instance", m)
	}
	if m := srv.Stats().MemoryBytes; m != 0 {
		t.Fatalf("server reports %d bytes with no activation", m)
	}
}

// A limit too small for even one instance answers too_large: retrying
// cannot help.
func TestMemoryLimitBelowOneInstanceIsTooLarge(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.MemoryLimit = wasm.InstanceOverhead }})
	e.putGuests()
	_, err := e.invoke("a", "counter-c", "inc", nil)
	wantCode(t, err, nola.CodeTooLarge)
	if m := e.hosts[0].MemoryBytes(); m != 0 {
		t.Fatalf("a refused activation left %d bytes charged", m)
	}
}
