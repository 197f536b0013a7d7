package nola_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
)

// Test types of the typed layer. The wallet keeps its balance in KV
// (typed Key) and counts its invocations in memory.
type (
	depositReq struct {
		Amount int64  `json:"amount"`
		Memo   string `json:"memo,omitempty"`
	}
	balanceResp struct {
		Amount int64 `json:"amount"`
	}
	// transferReq moves money to another wallet: an actor-to-actor call.
	transferReq struct {
		To     string `json:"to"`
		Amount int64  `json:"amount"`
	}
)

var walletBalance = nola.Key[int64]{Name: "balance"}

type wallet struct {
	nola.Router
	handled int // typed handler runs, in memory
}

func newWallet(codec nola.Codec) nola.Factory {
	return func(nola.Ref) (nola.Actor, error) {
		w := &wallet{}
		w.Codec = codec
		nola.Handle(&w.Router, "deposit", w.deposit)
		nola.Handle(&w.Router, "balance", w.balance)
		nola.Handle(&w.Router, "transfer", w.transfer)
		nola.Handle(&w.Router, "handled", func(*nola.Context, struct{}) (int, error) { return w.handled, nil })
		nola.Handle(&w.Router, "remind", w.remind)
		w.HandleRaw("echo", func(_ *nola.Context, p []byte) ([]byte, error) { return p, nil })
		return w, nil
	}
}

func (w *wallet) deposit(cx *nola.Context, d depositReq) (balanceResp, error) {
	w.handled++
	if d.Amount <= 0 {
		return balanceResp{}, fmt.Errorf("deposit of %d: amount must be positive", d.Amount)
	}
	n, _, err := walletBalance.Get(cx)
	if err != nil {
		return balanceResp{}, err
	}
	n += d.Amount
	return balanceResp{n}, walletBalance.Put(cx, n)
}

func (w *wallet) balance(cx *nola.Context, _ struct{}) (balanceResp, error) {
	w.handled++
	n, _, err := walletBalance.Get(cx)
	return balanceResp{n}, err
}

// transfer withdraws here, then deposits at the other wallet through a
// typed actor-to-actor call (the withdrawal commits before the call).
func (w *wallet) transfer(cx *nola.Context, t transferReq) (balanceResp, error) {
	w.handled++
	n, _, err := walletBalance.Get(cx)
	if err != nil {
		return balanceResp{}, err
	}
	if t.Amount <= 0 || t.Amount > n {
		return balanceResp{}, fmt.Errorf("transfer of %d from a balance of %d", t.Amount, n)
	}
	if err := walletBalance.Put(cx, n-t.Amount); err != nil {
		return balanceResp{}, err
	}
	var c nola.Caller = cx
	if w.Codec != nil {
		c = nola.WithCodec(cx, w.Codec)
	}
	if _, err := nola.Call[depositReq, balanceResp](cx, c, nola.Ref{ID: t.To, Type: cx.Ref().Type}, "deposit", depositReq{Amount: t.Amount}); err != nil {
		return balanceResp{}, err
	}
	return balanceResp{n - t.Amount}, nil
}

// remind deposits amount after delay, through a typed timer.
func (w *wallet) remind(cx *nola.Context, d depositReq) (struct{}, error) {
	return struct{}{}, w.SetTimer(cx, "remind", time.Second, 0, "deposit", d)
}

// typedSim runs body on a deterministic 2-server cluster with the wallet
// type (JSON) and "gwallet" (gob).
func typedSim(t *testing.T, seed uint64, body func(e *simtest.Env, call func() (context.Context, func()))) {
	t.Helper()
	types := map[string]nola.Factory{
		"wallet":  newWallet(nil),
		"gwallet": newWallet(gobCodec{}),
	}
	simtest.Run(t, simtest.Options{Seed: seed, Servers: 2, Types: types, NS: "typed"}, func(e *simtest.Env) {
		body(e, func() (context.Context, func()) { return e.Driver.WithTimeout(e.Ctx, 5*time.Second) })
	})
}

func mustCode(t *testing.T, err error, code nola.Code) *nola.Error {
	t.Helper()
	var ne *nola.Error
	if !errors.As(err, &ne) || ne.Code != code {
		t.Fatalf("got %v (code %q), want code %s", err, nola.CodeOf(err), code)
	}
	return ne
}

func TestTypedCallsThroughTheCluster(t *testing.T) {
	typedSim(t, 1, func(e *simtest.Env, call func() (context.Context, func())) {
		ctx, cancel := call()
		defer cancel()
		cl := e.C.Client()
		alice := nola.Ref{Namespace: "typed", ID: "alice", Type: "wallet"}
		for i, want := range []int64{5, 12} {
			got, err := nola.Call[depositReq, balanceResp](ctx, cl, alice, "deposit", depositReq{Amount: int64(5 + 2*i)})
			if err != nil || got.Amount != want {
				t.Fatalf("deposit #%d = %+v, %v; want %d", i, got, err, want)
			}
		}
		// A raw caller speaks the codec's encoding to the same actor.
		raw, err := cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "alice", Type: "wallet"}, "deposit", []byte(`{"amount":3}`))
		if err != nil || string(raw) != `{"amount":15}` {
			t.Fatalf("raw deposit = %s, %v", raw, err)
		}
		// An empty payload is the zero request.
		raw, err = cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "alice", Type: ""}, "balance", nil)
		if err != nil || string(raw) != `{"amount":15}` {
			t.Fatalf("raw balance = %s, %v", raw, err)
		}
		// Raw handlers beside typed ones keep the bytes as they are.
		raw, err = cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "alice", Type: ""}, "echo", []byte{0, 0xff, 'x'})
		if err != nil || !bytes.Equal(raw, []byte{0, 0xff, 'x'}) {
			t.Fatalf("echo = %q, %v", raw, err)
		}
		// A handler's own error is an actor error, and commits nothing.
		_, err = nola.Call[depositReq, balanceResp](ctx, cl, alice, "deposit", depositReq{Amount: -1})
		if ne := mustCode(t, err, nola.CodeActorError); !strings.Contains(ne.Message, "amount must be positive") {
			t.Fatalf("handler error = %q", ne.Message)
		}
		// Actor-to-actor: alice pays bob 4 through a typed call.
		left, err := nola.Call[transferReq, balanceResp](ctx, cl, alice, "transfer", transferReq{To: "bob", Amount: 4})
		if err != nil || left.Amount != 11 {
			t.Fatalf("transfer = %+v, %v; want 11 left", left, err)
		}
		bob, err := nola.Call[struct{}, balanceResp](ctx, cl, nola.Ref{Namespace: "typed", ID: "bob"}, "balance", struct{}{})
		if err != nil || bob.Amount != 4 {
			t.Fatalf("bob = %+v, %v; want 4", bob, err)
		}
	})
}

func TestUnknownOperationListsTheKnownOnes(t *testing.T) {
	// Directly on a Router: the typed cause is there for errors.As.
	w, _ := newWallet(nil)(nola.Ref{})
	_, err := w.Invoke(nil, "withdraw", nil)
	ne := mustCode(t, err, nola.CodeBadRequest)
	if !errors.Is(err, nola.ErrBadRequest) || ne.Retryable {
		t.Fatalf("unknown op: Is(ErrBadRequest)=%v retryable=%v", errors.Is(err, nola.ErrBadRequest), ne.Retryable)
	}
	var ue *nola.UnknownOpError
	if !errors.As(err, &ue) {
		t.Fatalf("unknown op error %v does not wrap *UnknownOpError", err)
	}
	want := []string{"balance", "deposit", "echo", "handled", "remind", "transfer"}
	if ue.Op != "withdraw" || strings.Join(ue.Known, ",") != strings.Join(want, ",") {
		t.Fatalf("UnknownOpError = %+v, want op withdraw and known %v", ue, want)
	}
	// Through the cluster the caller gets the code and the list.
	typedSim(t, 2, func(e *simtest.Env, call func() (context.Context, func())) {
		ctx, cancel := call()
		defer cancel()
		_, err := e.C.Client().Call(ctx, nola.Ref{Namespace: "typed", ID: "w", Type: "wallet"}, "withdraw", nil)
		ne := mustCode(t, err, nola.CodeBadRequest)
		if !strings.Contains(ne.Message, `unknown operation "withdraw" (known: balance, deposit, echo, handled, remind, transfer)`) {
			t.Fatalf("message %q does not list the known operations", ne.Message)
		}
	})
}

func TestUnknownOperationListIsBounded(t *testing.T) {
	var r nola.Router
	_, err := r.Invoke(nil, "x", nil)
	if !strings.Contains(err.Error(), "has no operations") {
		t.Fatalf("empty router: %v", err)
	}
	for i := range 40 {
		r.HandleRaw(fmt.Sprintf("op%02d", i), func(*nola.Context, []byte) ([]byte, error) { return nil, nil })
	}
	_, err = r.Invoke(nil, strings.Repeat("y", 10_000), nil)
	var ue *nola.UnknownOpError
	if !errors.As(err, &ue) || len(ue.Known) != 40 {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "op31 and 8 more)") || strings.Contains(msg, "op32") || len(msg) > 600 {
		t.Fatalf("message not bounded (%d bytes): %.300q", len(msg), msg)
	}
}

func TestUndecodablePayloadIsABadRequestNamingOpAndType(t *testing.T) {
	w, _ := newWallet(nil)(nola.Ref{})
	for _, payload := range []string{`{"amount":"ten"}`, `not json`, `{"amount":1} trailing`, `[1,2]`} {
		_, err := w.Invoke(nil, "deposit", []byte(payload))
		mustCode(t, err, nola.CodeBadRequest)
		var de *nola.DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("%s: %v does not wrap *DecodeError", payload, err)
		}
		if de.Op != "deposit" || de.Type != "nola_test.depositReq" || de.Codec != "json" || de.Result {
			t.Fatalf("%s: DecodeError = %+v", payload, de)
		}
		if !strings.Contains(err.Error(), `operation "deposit": payload is not a valid json nola_test.depositReq`) {
			t.Fatalf("%s: message %q", payload, err)
		}
	}
	if n := w.(*wallet).handled; n != 0 {
		t.Fatalf("handler ran %d times on undecodable payloads", n)
	}
	typedSim(t, 3, func(e *simtest.Env, call func() (context.Context, func())) {
		ctx, cancel := call()
		defer cancel()
		_, err := e.C.Client().Call(ctx, nola.Ref{Namespace: "typed", ID: "w", Type: "wallet"}, "deposit", []byte(`{"amount":"ten"}`))
		ne := mustCode(t, err, nola.CodeBadRequest)
		if !strings.Contains(ne.Message, "nola_test.depositReq") || !strings.Contains(ne.Message, `"deposit"`) {
			t.Fatalf("caller's message %q does not name the op and type", ne.Message)
		}
	})
}

func TestCallResultThatDoesNotFitIsATypedError(t *testing.T) {
	typedSim(t, 4, func(e *simtest.Env, call func() (context.Context, func())) {
		ctx, cancel := call()
		defer cancel()
		ref := nola.Ref{Namespace: "typed", ID: "r", Type: "wallet"}
		// The actor answers {"amount":2}; the caller expects a string.
		_, err := nola.Call[depositReq, string](ctx, e.C.Client(), ref, "deposit", depositReq{Amount: 2})
		mustCode(t, err, nola.CodeBadRequest)
		var de *nola.DecodeError
		if !errors.As(err, &de) || !de.Result || de.Type != "string" || de.Op != "deposit" {
			t.Fatalf("got %v (%+v), want a result DecodeError into string", err, de)
		}
		if !strings.Contains(err.Error(), "the operation ran") {
			t.Fatalf("message %q does not say the operation ran", err)
		}
		// It did run.
		got, err := nola.Call[struct{}, balanceResp](ctx, e.C.Client(), ref, "balance", struct{}{})
		if err != nil || got.Amount != 2 {
			t.Fatalf("balance = %+v, %v; want 2", got, err)
		}
	})
}

func TestCallThatCannotEncodeSendsNothing(t *testing.T) {
	sent := 0
	c := nola.CallerFunc(func(context.Context, nola.Ref, string, []byte) ([]byte, error) {
		sent++
		return nil, nil
	})
	_, err := nola.Call[chan int, struct{}](context.Background(), c, nola.Ref{ID: "x"}, "op", make(chan int))
	ne := mustCode(t, err, nola.CodeBadRequest)
	if sent != 0 || !strings.Contains(ne.Message, "nothing was sent") || !strings.Contains(ne.Message, "chan int") {
		t.Fatalf("sent %d, error %q", sent, ne.Message)
	}
	// An empty result is the zero Resp; a non-empty one is decoded.
	c = nola.CallerFunc(func(_ context.Context, ref nola.Ref, op string, p []byte) ([]byte, error) {
		if op == "empty" {
			return nil, nil
		}
		return []byte(fmt.Sprintf(`{"amount":%d}`, len(ref.ID)+len(p))), nil
	})
	if got, err := nola.Call[int, balanceResp](context.Background(), c, nola.Ref{ID: "abc"}, "empty", 7); err != nil || got.Amount != 0 {
		t.Fatalf("empty result = %+v, %v", got, err)
	}
	if got, err := nola.Call[int, balanceResp](context.Background(), c, nola.Ref{ID: "abc"}, "len", 1234); err != nil || got.Amount != 7 {
		t.Fatalf("decoded result = %+v, %v; want 3+4", got, err)
	}
}

// gobCodec is a second codec, to show codecs are pluggable. encoding/gob
// is not hardened against hostile input (its doc says so): a real
// deployment facing untrusted callers should prefer a codec that is.
type gobCodec struct{}

func (gobCodec) Name() string { return "gob" }
func (gobCodec) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}
func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

func TestPluggableCodec(t *testing.T) {
	typedSim(t, 5, func(e *simtest.Env, call func() (context.Context, func())) {
		ctx, cancel := call()
		defer cancel()
		gc := nola.WithCodec(e.C.Client(), gobCodec{})
		g := nola.Ref{Namespace: "typed", ID: "g", Type: "gwallet"}
		got, err := nola.Call[depositReq, balanceResp](ctx, gc, g, "deposit", depositReq{Amount: 9, Memo: "gob"})
		if err != nil || got.Amount != 9 {
			t.Fatalf("gob deposit = %+v, %v", got, err)
		}
		// The bytes on the wire are gob's, not JSON.
		want, _ := gobCodec{}.Marshal(balanceResp{9})
		raw, err := e.C.Client().Call(ctx, nola.Ref{Namespace: "typed", ID: "g", Type: ""}, "balance", nil)
		if err != nil || !bytes.Equal(raw, want) || json.Valid(raw) {
			t.Fatalf("raw balance = %q, %v; want gob %q", raw, err, want)
		}
		// A JSON caller of a gob actor is told which codec failed.
		_, err = nola.Call[depositReq, balanceResp](ctx, e.C.Client(), g, "deposit", depositReq{Amount: 1})
		if ne := mustCode(t, err, nola.CodeBadRequest); !strings.Contains(ne.Message, "not a valid gob nola_test.depositReq") {
			t.Fatalf("json caller of a gob actor: %q", ne.Message)
		}
		// Gob actors call gob actors (transfer uses the router's codec).
		left, err := nola.Call[transferReq, balanceResp](ctx, gc, g, "transfer", transferReq{To: "h", Amount: 5})
		if err != nil || left.Amount != 4 {
			t.Fatalf("gob transfer = %+v, %v", left, err)
		}
		h, err := nola.Call[struct{}, balanceResp](ctx, gc, nola.Ref{Namespace: "typed", ID: "h", Type: "gwallet"}, "balance", struct{}{})
		if err != nil || h.Amount != 5 {
			t.Fatalf("h = %+v, %v", h, err)
		}
	})
}

// panicCodec panics on every decode: the router must turn that into a
// bad request, not an actor panic.
type panicCodec struct{ JSONish nola.JSONCodec }

func (panicCodec) Name() string                    { return "panicky" }
func (p panicCodec) Marshal(v any) ([]byte, error) { return p.JSONish.Marshal(v) }
func (panicCodec) Unmarshal([]byte, any) error     { panic("boom") }

func TestCodecPanicIsABadRequest(t *testing.T) {
	var r nola.Router
	r.Codec = panicCodec{}
	ran := false
	nola.Handle(&r, "op", func(*nola.Context, int) (int, error) { ran = true; return 1, nil })
	_, err := r.Invoke(nil, "op", []byte("1"))
	mustCode(t, err, nola.CodeBadRequest)
	var de *nola.DecodeError
	if !errors.As(err, &de) || !strings.Contains(de.Err.Error(), "codec panicked: boom") || ran {
		t.Fatalf("got %v, ran=%v", err, ran)
	}
	// The empty payload never reaches the codec.
	if out, err := r.Invoke(nil, "op", nil); err != nil || string(out) != "1" || !ran {
		t.Fatalf("empty payload: %q, %v, ran=%v", out, err, ran)
	}
}

func TestResultThatCannotEncodeIsAnActorError(t *testing.T) {
	var r nola.Router
	nola.Handle(&r, "bad", func(*nola.Context, struct{}) (func(), error) { return func() {}, nil })
	_, err := r.Invoke(nil, "bad", nil)
	var ne *nola.Error
	if err == nil || errors.As(err, &ne) || !strings.Contains(err.Error(), `operation "bad": encode the func() result as json`) {
		t.Fatalf("got %v; want a plain error (an actor error once it leaves the actor)", err)
	}
}

func TestRegistrationMistakesPanic(t *testing.T) {
	mustPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(fmt.Sprint(r), want) {
				t.Fatalf("%s: recovered %v, want a panic with %q", name, r, want)
			}
		}()
		f()
	}
	var r nola.Router
	nola.Handle(&r, "a", func(*nola.Context, int) (int, error) { return 0, nil })
	raw := func(*nola.Context, []byte) ([]byte, error) { return nil, nil }
	mustPanic("duplicate", `operation "a" registered twice`, func() { r.HandleRaw("a", raw) })
	mustPanic("nil raw", `nil handler for operation "b"`, func() { r.HandleRaw("b", nil) })
	mustPanic("nil typed", `nil handler for operation "c"`, func() {
		nola.Handle[int, int](&r, "c", nil)
	})
	if got := strings.Join(r.Ops(), ","); got != "a" {
		t.Fatalf("ops after the refused registrations = %q, want a", got)
	}
	mustPanic("empty", "empty operation name", func() {
		nola.Handle(&r, "", func(*nola.Context, int) (int, error) { return 0, nil })
	})
}

func TestTypedTimer(t *testing.T) {
	typedSim(t, 6, func(e *simtest.Env, call func() (context.Context, func())) {
		ctx, cancel := call()
		defer cancel()
		cl := e.C.Client()
		ref := nola.Ref{Namespace: "typed", ID: "t", Type: "wallet"}
		if _, err := nola.Call[depositReq, struct{}](ctx, cl, ref, "remind", depositReq{Amount: 6}); err != nil {
			t.Fatal(err)
		}
		before, err := nola.Call[struct{}, balanceResp](ctx, cl, ref, "balance", struct{}{})
		if err != nil || before.Amount != 0 {
			t.Fatalf("balance before the timer = %+v, %v", before, err)
		}
		e.Sleep(1500 * time.Millisecond) // virtual time: the timer is due at 1s
		after, err := nola.Call[struct{}, balanceResp](ctx, cl, ref, "balance", struct{}{})
		if err != nil || after.Amount != 6 {
			t.Fatalf("balance after the timer = %+v, %v; want 6", after, err)
		}
	})
}

func TestTypedTimerMistakesFailWhenSet(t *testing.T) {
	var r nola.Router
	nola.Handle(&r, "typed", func(*nola.Context, depositReq) (int, error) { return 0, nil })
	nola.Handle(&r, "iface", func(*nola.Context, fmt.Stringer) (int, error) { return 0, nil })
	r.HandleRaw("raw", func(*nola.Context, []byte) ([]byte, error) { return nil, nil })
	for _, c := range []struct {
		op   string
		req  any
		want string
	}{
		{"nosuch", nil, `unknown operation "nosuch" (known: iface, raw, typed)`},
		{"typed", transferReq{}, `operation "typed" takes nola_test.depositReq, not nola_test.transferReq`},
		{"typed", &depositReq{}, `takes nola_test.depositReq, not *nola_test.depositReq`},
		{"iface", 3, `takes fmt.Stringer, not int`},
		{"raw", "text", `operation "raw" is raw and takes []byte, not string`},
	} {
		// These checks come before the Context is touched.
		err := r.SetTimer(nil, "tm", time.Second, 0, c.op, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetTimer(%s, %T) = %v, want %q", c.op, c.req, err, c.want)
		}
	}
	var ue *nola.UnknownOpError
	if err := r.SetTimer(nil, "tm", time.Second, 0, "nosuch", nil); !errors.As(err, &ue) {
		t.Errorf("unknown timer op %v does not wrap *UnknownOpError", err)
	}
}

func TestCallFromAnActorMisused(t *testing.T) {
	types := map[string]nola.Factory{
		"wallet": newWallet(nil),
		"misuse": func(nola.Ref) (nola.Actor, error) {
			var r nola.Router
			nola.Handle(&r, "otherctx", func(cx *nola.Context, _ struct{}) (balanceResp, error) {
				return nola.Call[struct{}, balanceResp](context.Background(), cx, nola.Ref{ID: "w", Type: "wallet"}, "balance", struct{}{})
			})
			nola.Handle(&r, "otherns", func(cx *nola.Context, _ struct{}) (balanceResp, error) {
				return nola.Call[struct{}, balanceResp](cx, cx, nola.Ref{Namespace: "elsewhere", ID: "w", Type: "wallet"}, "balance", struct{}{})
			})
			r.HandleRaw("rawok", func(cx *nola.Context, _ []byte) ([]byte, error) {
				return cx.Call(nola.Ref{ID: "w", Type: "wallet"}, "balance", nil)
			})
			r.HandleRaw("rawotherns", func(cx *nola.Context, _ []byte) ([]byte, error) {
				return cx.Call(nola.Ref{Namespace: "elsewhere", ID: "w", Type: "wallet"}, "balance", nil)
			})
			nola.Handle(&r, "ok", func(cx *nola.Context, _ struct{}) (balanceResp, error) {
				return nola.Call[struct{}, balanceResp](cx, cx, nola.Ref{Namespace: cx.Ref().Namespace, ID: "w", Type: "wallet"}, "balance", struct{}{})
			})
			return &r, nil
		},
	}
	simtest.Run(t, simtest.Options{Seed: 7, Servers: 2, Types: types, NS: "typed"}, func(e *simtest.Env) {
		ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*time.Second)
		defer cancel()
		cl := e.C.Client()
		_, err := cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "m", Type: "misuse"}, "otherctx", nil)
		if ne := mustCode(t, err, nola.CodeBadRequest); !strings.Contains(ne.Message, "pass its *nola.Context as ctx") {
			t.Fatalf("other ctx: %q", ne.Message)
		}
		_, err = cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "m", Type: "misuse"}, "otherns", nil)
		if ne := mustCode(t, err, nola.CodeBadRequest); !strings.Contains(ne.Message, `namespace "elsewhere" is not the actor's own ("typed")`) {
			t.Fatalf("other namespace: %q", ne.Message)
		}
		out, err := cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "m", Type: "misuse"}, "ok", nil)
		if err != nil || string(out) != `{"amount":0}` {
			t.Fatalf("ok = %s, %v", out, err)
		}
		// The raw Ref form from inside an actor.
		out, err = cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "m", Type: "misuse"}, "rawok", nil)
		if err != nil || string(out) != `{"amount":0}` {
			t.Fatalf("rawok = %s, %v", out, err)
		}
		_, err = cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "m", Type: "misuse"}, "rawotherns", nil)
		if ne := mustCode(t, err, nola.CodeBadRequest); !strings.Contains(ne.Message, `namespace "elsewhere" is not the actor's own`) {
			t.Fatalf("raw other namespace: %q", ne.Message)
		}
	})
}

func TestKeyValueThatDoesNotDecode(t *testing.T) {
	types := map[string]nola.Factory{
		"kv": func(nola.Ref) (nola.Actor, error) {
			var r nola.Router
			r.HandleRaw("putraw", func(cx *nola.Context, p []byte) ([]byte, error) {
				return nil, cx.Put([]byte("balance"), p)
			})
			nola.Handle(&r, "get", func(cx *nola.Context, _ struct{}) (int64, error) {
				n, found, err := walletBalance.Get(cx)
				if err == nil && !found {
					return -1, nil
				}
				return n, err
			})
			nola.Handle(&r, "del", func(cx *nola.Context, _ struct{}) (struct{}, error) {
				return struct{}{}, walletBalance.Delete(cx)
			})
			return &r, nil
		},
	}
	simtest.Run(t, simtest.Options{Seed: 8, Servers: 1, Types: types, NS: "typed"}, func(e *simtest.Env) {
		ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*time.Second)
		defer cancel()
		ref := nola.Ref{Namespace: "typed", ID: "k", Type: "kv"}
		cl := e.C.Client()
		get := func() (int64, error) { return nola.Call[struct{}, int64](ctx, cl, ref, "get", struct{}{}) }
		if n, err := get(); err != nil || n != -1 {
			t.Fatalf("unset key = %d, %v; want not found", n, err)
		}
		if _, err := cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "k", Type: "kv"}, "putraw", []byte("41")); err != nil {
			t.Fatal(err)
		}
		if n, err := get(); err != nil || n != 41 {
			t.Fatalf("key = %d, %v; want 41", n, err)
		}
		if _, err := cl.Call(ctx, nola.Ref{Namespace: "typed", ID: "k", Type: "kv"}, "putraw", []byte("forty-one")); err != nil {
			t.Fatal(err)
		}
		_, err := get()
		if ne := mustCode(t, err, nola.CodeActorError); !strings.Contains(ne.Message, `KV key "balance": the stored value is not a valid json int64`) {
			t.Fatalf("corrupt value: %q", ne.Message)
		}
		if _, err := nola.Call[struct{}, struct{}](ctx, cl, ref, "del", struct{}{}); err != nil {
			t.Fatal(err)
		}
		if n, err := get(); err != nil || n != -1 {
			t.Fatalf("deleted key = %d, %v; want not found", n, err)
		}
	})
}

// rawCodec is a codec for byte strings only: the fuzz target's second
// codec.
type rawCodec struct{}

func (rawCodec) Name() string { return "raw" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case []byte:
		return v, nil
	case string:
		return []byte(v), nil
	}
	return nil, fmt.Errorf("raw codec: cannot encode %T", v)
}
func (rawCodec) Unmarshal(data []byte, v any) error {
	switch v := v.(type) {
	case *[]byte:
		*v = append((*v)[:0], data...)
	case *string:
		*v = string(data)
	default:
		return fmt.Errorf("raw codec: cannot decode into %T", v)
	}
	return nil
}

// fuzzShape exercises the JSON decoder's paths: nesting, maps, pointers,
// slices, numbers of every width, bytes (base64), interfaces.
type fuzzShape struct {
	I8    int8              `json:"i8"`
	U64   uint64            `json:"u64"`
	F     float32           `json:"f"`
	S     string            `json:"s"`
	B     []byte            `json:"b"`
	M     map[string][]int  `json:"m"`
	P     *fuzzShape        `json:"p"`
	A     [3]bool           `json:"a"`
	Any   any               `json:"any"`
	Raw   json.RawMessage   `json:"raw"`
	Inner map[int]fuzzShape `json:"inner"`
}

func fuzzRouters() []*nola.Router {
	j := &nola.Router{}
	nola.Handle(j, "shape", func(_ *nola.Context, s fuzzShape) (fuzzShape, error) { return s, nil })
	nola.Handle(j, "int", func(_ *nola.Context, n int64) (int64, error) { return n + 1, nil })
	nola.Handle(j, "list", func(_ *nola.Context, l []string) (int, error) { return len(l), nil })
	j.HandleRaw("raw", func(_ *nola.Context, p []byte) ([]byte, error) { return p, nil })
	r := &nola.Router{Codec: rawCodec{}}
	nola.Handle(r, "bytes", func(_ *nola.Context, b []byte) ([]byte, error) { return b, nil })
	nola.Handle(r, "string", func(_ *nola.Context, s string) (string, error) { return s, nil })
	nola.Handle(r, "wrong", func(_ *nola.Context, n int) (string, error) { return "", nil }) // raw cannot decode int
	return []*nola.Router{j, r}
}

// FuzzRouter sends hostile operations and payloads to routers: whatever
// arrives, the answer is a result or a bad-request error with a typed
// cause, never a panic; a JSON "shape" result re-decodes.
func FuzzRouter(f *testing.F) {
	for _, s := range []struct {
		op      string
		payload string
	}{
		{"shape", `{"i8":1,"u64":18446744073709551615,"f":1.5,"s":"x","b":"AAE=","m":{"k":[1,2]},"p":{"p":{"s":"deep"}},"a":[true,false,true],"any":[{"x":null}],"raw":{"z":1},"inner":{"3":{"s":"i"}}}`},
		{"shape", `{"i8":300}`},
		{"shape", `{"b":"not base64!"}`},
		{"shape", strings.Repeat(`{"p":`, 200) + `null` + strings.Repeat(`}`, 200)},
		{"shape", strings.Repeat(`[`, 20000)},
		{"shape", `{"inner":{"x":{}}}`},
		{"shape", "\xff\xfe{"},
		{"int", `9223372036854775808`},
		{"int", `-1e400`},
		{"list", `["a",1]`},
		{"raw", "\x00\x01"},
		{"bytes", "\x00binary\xff"},
		{"string", "text"},
		{"wrong", "12"},
		{"", ""},
		{"nosuch", `{}`},
		{"\xff\x00op", "x"},
	} {
		f.Add(s.op, []byte(s.payload))
	}
	routers := fuzzRouters()
	f.Fuzz(func(t *testing.T, op string, payload []byte) {
		for i, r := range routers {
			out, err := r.Invoke(nil, op, payload)
			if err != nil {
				ne := mustCode(t, err, nola.CodeBadRequest)
				var ue *nola.UnknownOpError
				var de *nola.DecodeError
				switch {
				case errors.As(err, &ue):
					if ue.Op != op || len(ue.Known) == 0 {
						t.Fatalf("router %d: UnknownOpError %+v for op %q", i, ue, op)
					}
				case errors.As(err, &de):
					if de.Op != op || de.Result {
						t.Fatalf("router %d: DecodeError %+v for op %q", i, de, op)
					}
				default:
					t.Fatalf("router %d: bad request without a typed cause: %v", i, err)
				}
				if len(ne.Message) > 2000 {
					t.Fatalf("router %d: message of %d bytes for a %d-byte input", i, len(ne.Message), len(op)+len(payload))
				}
				continue
			}
			if i == 0 && op == "shape" {
				var back fuzzShape
				if err := json.Unmarshal(out, &back); err != nil {
					t.Fatalf("shape result %q does not re-decode: %v", out, err)
				}
			}
		}
	})
}
