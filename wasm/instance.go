package wasm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/instrument"
)

// Instance states.
const (
	instIdle int32 = iota
	instBusy
	instClosed
	// instTrim: the Host's engine trim holds the idle instance for a
	// moment, to drop its call engine (trimEngine); acquire and reclaim
	// wait it out.
	instTrim
)

// instance is one actor's instantiated module. Invocations on it are
// serialized by the engine (one activation, one lock); the only other
// parties are the Host's sweep, which takes an idle instance by CAS, and
// its engine trim, which holds an idle one for a moment (instTrim).
//
// The instance is also the context.Context of every call into its guest
// (no allocation per call): host functions find it by type assertion. Its
// Done channel is nil: deadlines are enforced by fuel checkpoints, not by
// wazero's per-call goroutine.
//
// It holds only what lives as long as the instance; the state of an
// invocation is in its *invocation, allocated by begin and kept while the
// instance is warm, so the warm path allocates nothing, and dropped with
// the call engine when the instance has been idle for Config.EngineIdle
// (trimEngine): an idle instance is one of thousands (issue 16, item 7),
// and the invocation state was two thirds of its struct
// (TestIdleInstanceIsSmall).
type instance struct {
	h   *Host
	mod *compiled
	ref nola.Ref
	seq uint64
	m   api.Module
	mem api.Memory
	// guestCall is __guest_call, fetched from m when needed and dropped
	// by the Host's engine trim once the instance has been idle for
	// Config.EngineIdle: each api.Function holds a wazero call engine
	// (its fixed 10 KiB stack and more), the largest part of an idle
	// C actor's memory, while fetching it again costs some 20-30 µs, too
	// much for every warm call.
	guestCall api.Function
	fuel      api.MutableGlobal
	// lin is the linear memory, as the Host's allocator made it: what a
	// recycling resets (recycle.go).
	lin      *budgetMemory
	overhead int64 // compiled.overhead, charged until the instance closes

	state atomic.Int32
	// aborted: the last invocation's execution was aborted (release,
	// after the invocation's end, closes the instance).
	aborted  bool
	lastUsed time.Duration // monotonic start of the last invocation
	lastSeen atomic.Int64  // lastUsed, published for the sweep
	// pooled is what the instance counts in Host.idleWorker while it
	// waits in a worker pool (0: it does not); swapped out exactly once,
	// by the take that reuses it or by its close.
	pooled atomic.Int64

	// The current or last invocation's state; nil once trimmed. Its
	// fields are promoted: in.op is in.invocation.op.
	*invocation
}

// invocation is the per-invocation state of an instance, touched only by
// the invoking task (begin to end). It outlives the invocation only to be
// reused by the instance's next one (with its buffers): begin resets it.
type invocation struct {
	cx       hostContext
	ictx     context.Context // with ContextInterrupt: the call's context
	cancel   context.CancelFunc
	op       string
	payload  []byte
	resp     []byte
	tooLarge int
	guestErr string
	answers  int // __guest_response and __guest_error calls
	// unlimit restores cx after dispatch bounded it by the deadline.
	unlimit   func()
	hasErr    bool
	hostResp  []byte
	hostErr   string
	respBuf   []byte
	hostCalls int
	// effects counts the invocation's host calls that have effects
	// outside the instance (see effecting): a snapshot is taken only of
	// an initialization without any.
	effects  int
	logBytes int
	dropped  int
	output   []byte // captured stdout/stderr
	refills  uint64
	deadline time.Duration
	abort    *abortError
	// slot: the invocation holds an execution slot (Config.GuestSlots).
	slot bool
	// refused is the largest linear memory size, in bytes, whose growth
	// the Host's MemoryLimit refused during the invocation.
	refused int64
	// unsupported is the message of a host call this invocation made that
	// the server does not offer (nola.CodeUnsupported: KV on a
	// store-less server); a guest failing after it fails with that code.
	unsupported string
	stack       [2]uint64 // __guest_call's arguments and result
}

var _ context.Context = (*instance)(nil)

// Deadline, Done, Err and Value make the instance the context of its calls.
func (in *instance) Deadline() (time.Time, bool) { return time.Time{}, false }
func (in *instance) Done() <-chan struct{}       { return nil }
func (in *instance) Err() error                  { return nil }
func (in *instance) Value(key any) any {
	if _, ok := key.(instanceKey); ok {
		return in
	}
	return nil
}

// instanceKey finds the instance in a context derived from it.
type instanceKey struct{}

// interruptCtx is the call context with Config.ContextInterrupt: wazero
// watches its Done channel.
type interruptCtx struct {
	context.Context
	in *instance
}

func (c *interruptCtx) Value(key any) any {
	if _, ok := key.(instanceKey); ok {
		return c.in
	}
	return c.Context.Value(key)
}

// instanceOf recovers the instance from a host function's context.
func instanceOf(ctx context.Context) *instance {
	switch c := ctx.(type) {
	case *instance:
		return c
	case *interruptCtx:
		return c.in
	}
	if in, ok := ctx.Value(instanceKey{}).(*instance); ok {
		return in
	}
	panic(&abortError{kind: TrapABI, msg: "host function called outside an invocation"})
}

func (in *instance) callCtx() context.Context {
	if in.invocation != nil && in.ictx != nil {
		return &interruptCtx{Context: in.ictx, in: in}
	}
	return in
}

func (in *instance) idleSince() time.Duration { return time.Duration(in.lastSeen.Load()) }

// takeIdle moves the instance from idle to state to; false if it is
// busy or closed. It waits out the engine trim's brief hold (instTrim),
// which makes no call and takes no lock while it holds the instance.
func (in *instance) takeIdle(to int32) bool {
	// The state is read once per round: a failed CAS followed by a
	// second look would take the trim's hand-back (instTrim to instIdle,
	// in between) for "busy or closed".
	for {
		switch in.state.Load() {
		case instIdle:
			if in.state.CompareAndSwap(instIdle, to) {
				return true
			}
		case instTrim:
			runtime.Gosched()
		default:
			return false
		}
	}
}

// acquire marks the instance busy for an invocation; false if it is
// closed.
func (in *instance) acquire() bool {
	if !in.takeIdle(instBusy) {
		return false
	}
	in.h.busy.Add(1)
	if in.h.isClosed.Load() {
		in.state.Store(instIdle)
		in.close()
		in.h.doneBusy()
		return false
	}
	return true
}

// release ends an invocation. It reports whether the instance is gone
// (its execution was aborted, or the Host closed meanwhile).
func (in *instance) release() bool {
	in.lastSeen.Store(int64(in.lastUsed))
	gone := in.aborted || in.h.isClosed.Load()
	in.state.Store(instIdle)
	if gone {
		in.close()
	}
	in.h.doneBusy()
	return gone
}

// trimEngine drops the call engine of an instance idle since before
// idleBefore (its next invocation fetches it again); a busy or closed
// instance is left alone.
func (in *instance) trimEngine(idleBefore time.Duration) {
	if !in.state.CompareAndSwap(instIdle, instTrim) {
		return
	}
	if in.idleSince() <= idleBefore {
		if in.guestCall != nil {
			in.guestCall = nil
			in.h.trimmed.Add(1)
		}
		// With it, the invocation state: the first call after the
		// trim allocates it again, once, next to fetching the engine.
		in.invocation = nil
	}
	in.state.Store(instIdle)
}

// guest returns __guest_call, fetching it again if the trim dropped it.
func (in *instance) guest() api.Function {
	if in.guestCall == nil {
		in.guestCall = in.m.ExportedFunction(abi.GuestCall)
	}
	return in.guestCall
}

// sizeBytes is the instance's linear memory and overhead. It holds the
// instance like an invocation does while it reads them, so that the sweep
// or Host.Close cannot close it meanwhile; a busy or closed instance
// reports 0.
func (in *instance) sizeBytes() int64 {
	if !in.acquire() {
		return 0
	}
	n := in.overhead
	if in.mem != nil {
		n += int64(in.mem.Size())
	}
	in.state.Store(instIdle)
	if in.h.isClosed.Load() {
		in.close()
	}
	in.h.doneBusy()
	return n
}

// reclaim closes an idle instance (the sweep, Host.Close).
func (in *instance) reclaim() bool {
	if !in.takeIdle(instClosed) {
		return false
	}
	in.closeModule()
	return true
}

// close closes the instance whatever its state; the caller owns it.
func (in *instance) close() {
	if in.state.Swap(instClosed) == instClosed {
		return
	}
	in.closeModule()
}

func (in *instance) closeModule() {
	if in.m != nil {
		// Frees the linear memory, and its charge (budgetMemory.Free).
		_ = in.m.Close(context.Background())
	}
	in.releaseOverhead()
	in.unpool()
	in.h.forget(in)
}

// unpool stops counting the instance as an idle pooled worker.
func (in *instance) unpool() { in.h.idleWorker.Add(-in.pooled.Swap(0)) }

// releaseOverhead returns the instance's overhead to the Host's
// memory budget, once.
func (in *instance) releaseOverhead() {
	in.h.mem.release(in.overhead)
	in.overhead = 0
}

// refusedGrowth records that the memory budget refused to grow the
// instance's linear memory to size bytes (memory.grow returns -1).
func (in *instance) refusedGrowth(size int64) {
	if in.invocation != nil { // growth happens in invocations and instantiations only
		in.refused = max(in.refused, size)
	}
}

// begin prepares the per-invocation state.
func (in *instance) begin(cx hostContext, op string, payload []byte) {
	h := in.h
	if in.invocation == nil {
		in.invocation = new(invocation)
	}
	in.cx, in.op, in.payload = cx, op, payload
	in.resp, in.tooLarge, in.answers = nil, 0, 0
	in.guestErr, in.hasErr = "", false
	in.hostResp, in.hostErr = nil, ""
	in.hostCalls, in.logBytes, in.dropped, in.refills, in.effects = 0, 0, 0, 0, 0
	in.output = in.output[:0]
	in.abort, in.aborted, in.refused, in.unsupported = nil, false, 0, ""
	now := h.rt.Mono()
	in.lastUsed = now
	timeout := h.cfg.InvokeTimeout
	if d, ok := cx.Deadline(); ok {
		timeout = min(timeout, d.Sub(h.rt.Now()))
	}
	in.deadline = now + timeout
	if h.cfg.ContextInterrupt {
		in.ictx, in.cancel = h.rt.WithTimeout(cx, timeout)
	}
	if in.fuel != nil {
		in.fuel.Set(h.cfg.SliceFuel)
	}
}

// end drops the invocation's references and its execution slot.
func (in *instance) end() {
	in.dropSlot()
	if in.dropped > 0 || len(in.output) > 0 {
		in.flushLogs()
	}
	if in.cancel != nil {
		in.cancel()
		in.ictx, in.cancel = nil, nil
	}
	if in.unlimit != nil {
		in.unlimit()
		in.unlimit = nil
	}
	// The result and error message too: invoke has returned them (its
	// return values are taken before this deferred call), and an idle
	// instance must not pin up to MaxResultBytes. The operation's name
	// too: it may be a slice of the HTTP request line, which an idle
	// instance would otherwise keep alive (~70 B per live actor).
	in.cx, in.op, in.payload, in.hostResp = nil, "", nil, nil
	in.resp, in.guestErr = nil, ""
	// Do not keep a big invocation's buffers for the instance's life.
	if cap(in.respBuf) > 64<<10 {
		in.respBuf = nil
	}
	if cap(in.output) > 4<<10 {
		in.output = nil
	}
}

// invoke runs one operation. The caller has acquired the instance.
func (in *instance) invoke(cx hostContext, op string, payload []byte) ([]byte, error) {
	return in.call(in.guest(), cx, op, op, payload)
}

// create runs the guest's creation hook: nola_create, called as
// __guest_call is, with an empty operation and args as the payload. The
// caller has acquired the instance.
func (in *instance) create(cx *nola.Context, args []byte) error {
	// Fetched for the call, not kept: it runs once per actor, and every
	// api.Function held costs a call engine.
	fn := in.m.ExportedFunction(abi.CreateExport)
	if fn == nil {
		return &nola.Error{Code: nola.CodeInternal, Message: "wasm " + in.mod.name + ": creation hook missing from its instance"}
	}
	_, err := in.call(fn, cx, abi.CreateExport, "", args)
	return err
}

// call runs fn (__guest_call or nola_create) with op and payload; name
// names the call in errors.
func (in *instance) call(fn api.Function, cx hostContext, name, op string, payload []byte) ([]byte, error) {
	in.begin(cx, op, payload)
	defer in.end()
	if _, err := in.takeSlot(false); err != nil {
		return nil, err
	}
	in.stack[0], in.stack[1] = uint64(len(op)), uint64(len(payload))
	err := fn.CallWithStack(in.callCtx(), in.stack[:])
	if err != nil {
		return nil, in.failed(name, err)
	}
	if in.tooLarge > 0 {
		return nil, nola.InvocationError(nola.CodeTooLarge,
			fmt.Sprintf("wasm %s: %s: result of %d bytes exceeds the limit of %d", in.mod.name, name, in.tooLarge, in.h.cfg.MaxResultBytes))
	}
	if uint32(in.stack[0]) != 1 || in.hasErr {
		msg := in.guestErr
		if !in.hasErr {
			msg = fmt.Sprintf("call to %q was unsuccessful", name)
		}
		if in.refused > 0 {
			// Most likely the guest's answer to the refused memory: say
			// so, with the code callers branch on.
			return nil, in.h.memoryError(in.mod.name, name+" (the guest answered: "+firstLines(msg, 1, 256)+")", in.refused+in.overhead)
		}
		if in.unsupported != "" {
			// The guest's answer to a host call the server does not
			// offer: keep the code callers branch on.
			return nil, nola.InvocationError(nola.CodeUnsupported, fmt.Sprintf("wasm %s: %s: %s (the guest answered: %s)",
				in.mod.name, name, in.unsupported, firstLines(msg, 1, 256)))
		}
		return nil, &GuestError{Module: in.mod.name, Op: name, Message: msg}
	}
	return in.resp, nil
}

// failed is trapError for an aborted execution, unless the Host refused
// the guest memory during it: then the trap (an out-of-memory abort, most
// likely) answers with the memory error callers branch on.
func (in *instance) failed(op string, err error) error {
	terr := in.trapError(op, err)
	if in.refused > 0 {
		return in.h.memoryError(in.mod.name, op+" (the guest then aborted: "+terr.Error()+")", in.refused+in.overhead)
	}
	return terr
}

// memoryError is the error of an activation or an invocation that needed
// need bytes (its instance's linear memory plus overhead) beyond
// the Host's MemoryLimit: CodeTooLarge if the limit can never hold it,
// CodeUnavailable (retry later, when idle actors have been evicted)
// otherwise. Neither is marked retryable: an invocation may have had
// effects before its memory ran out, and an automatic retry of a refused
// activation would only spin against the same full server.
func (h *Host) memoryError(module, what string, need int64) error {
	used, limit := h.mem.used.Load(), h.mem.limit
	if need > limit {
		return nola.InvocationError(nola.CodeTooLarge, fmt.Sprintf(
			"wasm %s: %s: needs %d bytes of WASM memory, more than this server's limit of %d (nola serve --wasm-memory-limit)",
			module, what, need, limit))
	}
	return nola.InvocationError(nola.CodeUnavailable, fmt.Sprintf(
		"wasm %s: %s: the actor's %d bytes of WASM memory do not fit: this server's limit of %d is reached (%d in use); retry later, or raise the limit (nola serve --wasm-memory-limit)",
		module, what, need, limit, used))
}

// trapError classifies an aborted execution and marks the instance for
// discarding.
func (in *instance) trapError(op string, err error) error {
	in.aborted = true
	in.h.countTrap()
	te := &TrapError{Module: in.mod.name, Op: op, Kind: TrapRuntime, Message: firstLines(err.Error(), 1, 1024)}
	var exit *sys.ExitError
	switch {
	case in.abort != nil:
		te.Kind, te.Message = in.abort.kind, in.abort.msg
	case errors.As(err, &exit) && (exit.ExitCode() == sys.ExitCodeDeadlineExceeded || exit.ExitCode() == sys.ExitCodeContextCanceled):
		te.Kind, te.Message = TrapDeadline, "interrupted: "+exit.Error()
	}
	if len(in.output) > 0 {
		// What the guest said before dying (a Go panic's message).
		te.Message += "; guest output: " + firstLines(string(in.output), 8, 2048)
	}
	in.h.log.Warn("wasm guest aborted", "module", in.mod.name, "actor", in.ref.ID, "op", op, "kind", string(te.Kind), "msg", te.Message)
	return te
}

// fail aborts the guest's execution from a host function.
func (in *instance) fail(kind TrapKind, format string, args ...any) {
	in.abort = &abortError{kind: kind, msg: fmt.Sprintf(format, args...)}
	panic(in.abort)
}

// refill is called when the guest's fuel runs out, at the end of its
// slice: it checks the budget and the deadline, lets a waiting guest run,
// then gives another slice.
func (in *instance) refill(m api.Module) {
	if in.fuel == nil {
		// A start function, running inside InstantiateModule.
		g, ok := m.ExportedGlobal(instrument.FuelExport).(api.MutableGlobal)
		if !ok {
			in.fail(TrapABI, "the module lacks its fuel global")
		}
		in.fuel = g
	}
	in.refills++
	h := in.h
	if in.refills*h.cfg.SliceFuel >= h.cfg.MaxFuel {
		in.fail(TrapFuel, "ran %d checkpoints, the limit is %d", in.refills*h.cfg.SliceFuel, h.cfg.MaxFuel)
	}
	if now := h.rt.Mono(); now > in.deadline {
		in.fail(TrapDeadline, "still running %v after the invocation's deadline", now-in.deadline)
	}
	in.endSlice("a slice")
	in.fuel.Set(h.cfg.SliceFuel)
}

// countHostCall enforces MaxHostCalls.
func (in *instance) countHostCall() {
	in.hostCalls++
	if in.hostCalls > in.h.cfg.MaxHostCalls {
		in.fail(TrapHostCalls, "more than %d host calls in one invocation", in.h.cfg.MaxHostCalls)
	}
	if in.hostCalls%hostCallsPerSlice == 0 {
		in.endSlice("a slice of host calls")
	}
}

// pastDeadline reports whether the invocation's deadline has passed. Fuel
// is burnt by guest code only, so host functions check the clock
// themselves: past the deadline they do no work (a host call fails with
// a timeout, a log line is dropped) or, where they cannot fail, trap.
func (in *instance) pastDeadline() bool { return in.h.rt.Mono() > in.deadline }

// maxAnswers bounds __guest_response and __guest_error calls in one
// invocation (a guest answers once; each copies up to MaxResultBytes).
const maxAnswers = 16

// countAnswer enforces maxAnswers.
func (in *instance) countAnswer(fn string) {
	in.answers++
	if in.answers > maxAnswers {
		in.fail(TrapABI, "%s called more than %d times in one invocation", fn, maxAnswers)
	}
}

// logMsg logs a guest message within the invocation's log budget (checked
// before the message is copied out of guest memory).
func (in *instance) logMsg(level slog.Level, msg []byte) {
	if in.logBytes+len(msg) > in.h.cfg.MaxLogBytes {
		in.dropped++
		return
	}
	in.logBytes += len(msg)
	in.h.log.Log(context.Background(), level, string(msg), "ns", in.ref.Namespace, "actor", in.ref.ID, "module", in.mod.name)
}

// capture keeps stdout/stderr output within the log budget.
func (in *instance) capture(b []byte) {
	room := in.h.cfg.MaxLogBytes - in.logBytes
	if room <= 0 {
		in.dropped++
		return
	}
	if len(b) > room {
		b = b[:room]
		in.dropped++
	}
	in.logBytes += len(b)
	in.output = append(in.output, b...)
}

func (in *instance) flushLogs() {
	if len(in.output) > 0 {
		in.h.log.Info("wasm guest output", "ns", in.ref.Namespace, "actor", in.ref.ID, "module", in.mod.name, "output", string(in.output))
	}
	if in.dropped > 0 {
		in.h.log.Warn("wasm guest log output dropped", "ns", in.ref.Namespace, "actor", in.ref.ID, "module", in.mod.name, "dropped", in.dropped, "limit", in.h.cfg.MaxLogBytes)
	}
}
