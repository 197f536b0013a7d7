package wasm_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// A guest's creation hook (nola_create; wapc.h's wapc_create, the Go SDK's
// guest.Create) gets the creation arguments once: they survive a crash of
// the owner between the creation and the first activation, and a
// reactivation on another server neither reruns the hook nor loses them
// (self/creation_args).
func TestGuestCreationHookRunsOnceAcrossCrashes(t *testing.T) {
	bins := guestBins{"creator-c": wasmtest.C(t, "creator"), "creator-go": wasmtest.Go(t, "creator")}
	for _, typ := range []string{"creator-c", "creator-go"} {
		t.Run(typ, func(t *testing.T) {
			runSim(t, 401, 3, bins, nil, func(e *simEnv) {
				owner := func() int {
					rec, ok, err := e.C.Client().Inspector().Actor(context.Background(), "sim", "a")
					if err != nil || !ok || rec.Owner == "" {
						t.Fatalf("record %+v found=%v err=%v", rec, ok, err)
					}
					i, _ := strconv.Atoi(rec.Owner[1:])
					return i
				}
				args := []byte("args\x00of " + typ)
				created, err := e.C.Client().Create(e.Ctx, "sim", "a", typ, args)
				if err != nil || !created {
					t.Fatalf("create = %v, %v", created, err)
				}
				e.Crash(owner()) // before the first activation
				if got, _, err := e.InvokeUntil(4*simTTL, "a", typ, "creates"); err != nil || got != "1" {
					t.Fatalf("creates after the first activation = %q, %v; want 1", got, err)
				}
				e.Crash(owner()) // after it
				if got, _, err := e.InvokeUntil(4*simTTL, "a", typ, "creates"); err != nil || got != "1" {
					t.Fatalf("creates after a reactivation = %q, %v; want 1 (the hook ran again)", got, err)
				}
				if got := e.MustInvoke("a", typ, "given", nil); got != string(args) {
					t.Errorf("the hook got %q, want %q", got, args)
				}
				if got := e.MustInvoke("a", typ, "args", nil); got != string(args) {
					t.Errorf("self/creation_args = %q, want %q", got, args)
				}
				// An actor created without arguments reads none.
				if _, err := e.C.Client().Create(e.Ctx, "sim", "b", typ, nil); err != nil {
					t.Fatal(err)
				}
				if got := e.MustInvoke("b", typ, "args", nil); got != "" {
					t.Errorf("creation args of an actor created without = %q", got)
				}
			})
		})
	}
}

// createExportModule is a minimal waPC module (startModule's) that also
// exports its () -> () function as nola_create: the wrong signature.
func createExportModule() []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, revSection(1, []byte{3, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})...)
	imp := append([]byte{1}, revName("wapc")...)
	imp = append(imp, revName("__guest_request")...)
	b = append(b, revSection(2, append(imp, 0, 0))...)
	b = append(b, revSection(3, []byte{2, 1, 2})...)
	b = append(b, revSection(5, []byte{1, 0, 1})...)
	exp := append([]byte{3}, revName("memory")...)
	exp = append(exp, 2, 0)
	exp = append(exp, revName("__guest_call")...)
	exp = append(exp, 0, 1)
	exp = append(exp, revName("nola_create")...)
	exp = append(exp, 0, 2)
	b = append(b, revSection(7, exp)...)
	return append(b, revSection(10, []byte{2, 4, 0, 0x41, 1, 0x0b, 2, 0, 0x0b})...)
}

// A module whose nola_create does not have __guest_call's signature is
// refused at upload, with the reason.
func TestCreateExportSignatureIsChecked(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.mods.Put(e.ctx, ns, "badcreate", createExportModule(), modules.Options{})
	if err == nil || !strings.Contains(err.Error(), "nola_create has signature ->, want ii->i") {
		t.Fatalf("upload of a module with nola_create () -> (): %v", err)
	}
}

// A worker has no creation arguments: the creator module run as a
// stateless worker gets a bad_request host error for self/creation_args
// (and its creation hook is never called: workers are not created).
func TestWorkerHasNoCreationArgs(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests()
	_, err := e.c.Client().CallWorker(callCtx(t), ns, "creator-c", "args", nil)
	wantHostError(t, err, "workers are stateless: they have no creation arguments")
}
