package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/model"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/tuple"
	"github.com/nolaproject/nola/rt/simrt"
)

// Counterexample replay: a model counterexample (model.Check with a
// mutation) becomes a scripted schedule — which server processes start,
// which client operations run, which store messages are held and when
// they land — and the schedule runs against the real engine (nola servers
// on simrt, the simulator's network, store links and oracle) with the same
// mutation. The oracle names the violations with the model's property
// names, so "reproduced" means: the oracle reports the model's violation.

// ScriptOp is one kind of scripted step.
type ScriptOp int

// Scripted steps.
const (
	// ScriptStart starts the server's process (it registers).
	ScriptStart ScriptOp = iota + 1
	// ScriptTick lets one model tick (LeaseTTL / model.L) of time pass.
	ScriptTick
	// ScriptInvoke runs a client's writing operation on the actor and
	// waits until its execution starts on the server; with Hold, the
	// server's store messages are held from that instant (a buffering
	// partition: they land, in order, when it heals).
	ScriptInvoke
	// ScriptExpire waits until the store has expired the server's lease
	// (its keep-alives are held).
	ScriptExpire
	// ScriptDeliver heals the server's store link: the held messages land.
	ScriptDeliver
	// ScriptFence cuts the server from the store (its keep-alives are
	// lost) and waits until it fences itself at its local deadline.
	ScriptFence
	// ScriptTimerFires waits for the actor's timer to fire on the server
	// (under TimerIgnoresFence, on the activation the fence dropped);
	// without the mutation it never does, and the step just lets the
	// timer's period pass.
	ScriptTimerFires
)

func (o ScriptOp) String() string {
	return [...]string{"?", "start", "tick", "invoke", "expire", "deliver", "fence", "timer-fires"}[o]
}

// ScriptStep is one step of a schedule; Model is the model step it comes
// from.
type ScriptStep struct {
	Op     ScriptOp
	Server int
	Actor  int
	Hold   bool
	// Timer: the invocation arms a timer (a ticker's "arm", period
	// timerPeriod) instead of writing.
	Timer bool
	Model string
}

func (s ScriptStep) String() string {
	h := ""
	if s.Hold {
		h = " (hold store link at execution start)"
	}
	if s.Timer {
		h += " (arm a timer)"
	}
	return fmt.Sprintf("%s s%d A%d%s  ← %s", s.Op, s.Server+1, s.Actor+1, h, s.Model)
}

// ScriptFromTrace turns a model counterexample into a schedule. It
// handles the actions of the traces of SkipStoreFence-like runs
// (registration, ticks, placement and activation on the only live server,
// an execution, a commit in flight while a lease expires, its late
// arrival) and of TimerIgnoresFence-like runs (an execution that arms a
// timer, a lease that expires while the server is cut off, its fence at
// the local deadline, the timer firing on the dropped activation); any
// other action is an error naming it, so that a model change that alters
// the trace fails loudly rather than replaying something else.
//
// The arming execution returns at once in the engine, where the model's
// trace still has it running at the fence: the engine's schedule is the
// model's with the execution's end moved before the tick, which the
// model allows too (the timer is armed either way).
func ScriptFromTrace(m *model.Model, trace []model.Step[model.State, model.Action]) ([]ScriptStep, error) {
	var out []ScriptStep
	prev := m.Init()
	held := map[uint8]bool{}
	for i, st := range trace {
		a := st.Action
		desc := fmt.Sprintf("%d. %s", i+1, m.Describe(a, &prev))
		switch a.Kind {
		case model.ARegister:
			out = append(out, ScriptStep{Op: ScriptStart, Server: int(a.S), Model: desc})
		case model.ATick:
			expired := false
			for s := 0; s < m.Scope().Servers; s++ {
				if prev.S[s].SRec != 0 && st.State.S[s].SRec == 0 {
					if !held[uint8(s)] && i+1 < len(trace) && trace[i+1].Action.Kind == model.AFenceDeadline && int(trace[i+1].Action.S) == s {
						// The server is cut off: its lease expires and it
						// fences at its deadline (the next model step).
						out = append(out, ScriptStep{Op: ScriptFence, Server: s, Model: desc})
						expired = true
						continue
					}
					if !held[uint8(s)] {
						return nil, fmt.Errorf("step %s: a lease expires while its keep-alives flow", desc)
					}
					out = append(out, ScriptStep{Op: ScriptExpire, Server: s, Model: desc})
					expired = true
				}
			}
			if !expired {
				out = append(out, ScriptStep{Op: ScriptTick, Model: desc})
			}
		case model.APlace, model.AArrive, model.AActivated:
			// Part of the client operation that the execution start
			// completes (placement can only choose a live server: the
			// runner checks that the execution ran where the model says).
			if a.Kind == model.AActivated && a.X != 1 {
				return nil, fmt.Errorf("step %s: activation dropped: not scripted", desc)
			}
		case model.AStart:
			out = append(out, ScriptStep{Op: ScriptInvoke, Server: int(a.S), Actor: int(a.A), Model: desc})
		case model.ACommitSend:
			n := len(out) - 1
			if n < 0 || out[n].Op != ScriptInvoke || out[n].Server != int(a.S) {
				return nil, fmt.Errorf("step %s: a commit not right after its execution's start", desc)
			}
			out[n].Hold = true
			held[a.S] = true
		case model.AFenceDeadline:
			n := len(out) - 1
			if n < 0 || out[n].Op != ScriptFence || out[n].Server != int(a.S) {
				return nil, fmt.Errorf("step %s: a fence not right after its lease expired", desc)
			}
		case model.ASetTimer:
			n := len(out) - 1
			if n < 0 || out[n].Op != ScriptInvoke || out[n].Server != int(a.S) || a.X != 0 {
				return nil, fmt.Errorf("step %s: a timer not armed right after its execution's start", desc)
			}
			out[n].Timer = true
		case model.AGhostFire:
			out = append(out, ScriptStep{Op: ScriptTimerFires, Server: int(a.S), Actor: int(a.A), Model: desc})
		case model.AStoreApply:
			if !held[a.S] {
				return nil, fmt.Errorf("step %s: the request was not held", desc)
			}
			out = append(out, ScriptStep{Op: ScriptDeliver, Server: int(a.S), Model: desc})
			held[a.S] = false
		default:
			return nil, fmt.Errorf("step %s: no script for this action", desc)
		}
		prev = st.State
	}
	return out, nil
}

// ReplayResult is what a scripted run did.
type ReplayResult struct {
	Violations []Violation
	// KV is each model actor's counter in the store at the end ("" if
	// never written).
	KV []string
	// Trace is the world's trace (registrations, fences, activations).
	Trace string
	// TimerFired: a ScriptTimerFires step saw the timer fire.
	TimerFired bool
}

// Has reports whether the oracle found a violation of rule.
func (r *ReplayResult) Has(rule string) bool {
	for _, v := range r.Violations {
		if v.Rule == rule {
			return true
		}
	}
	return false
}

// replayTTL is the lease TTL of scripted runs; holdFor how long a held
// store link stays cut (longer than a lease lives without keep-alives, so
// that ScriptExpire happens while it is held).
const (
	replayTTL = 2 * time.Second
	holdFor   = 2 * replayTTL
	// timerPeriod is the period of a scripted timer: it first fires after
	// the fence that follows it in the script (the deadline is at most a
	// lease away).
	timerPeriod = 3 * replayTTL
)

// execHook is the oracle with a callback on execution starts.
type execHook struct {
	*Oracle
	onStart func(nola.ActivationEvent)
}

func (h *execHook) ExecStart(ev nola.ActivationEvent) {
	h.Oracle.ExecStart(ev)
	if h.onStart != nil {
		h.onStart(ev)
	}
}

// holdCommit calls arm (once) just before the first actor-KV commit it
// passes on.
type holdCommit struct {
	kv.Store
	arm func()
}

func (h *holdCommit) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if h.arm != nil && writesActorKV(t) {
		h.arm()
		h.arm = nil
	}
	return h.Store.Commit(ctx, t)
}

func writesActorKV(t kv.Txn) bool {
	for _, op := range t.Ops {
		if k, err := tuple.Unpack(op.Key); err == nil && len(k) == 5 && k[1] == "kv" {
			return true
		}
	}
	return false
}

// Replay runs script against the real engine with mu, on the simulator's
// network (fixed latencies, no loss: the script orders the messages),
// store links and oracle. actors are the IDs of the model's actors (type
// kvcounter: a writing operation is one fenced commit).
func Replay(seed uint64, script []ScriptStep, mu mutation.Set) (*ReplayResult, error) {
	w := simrt.New(seed)
	var trace strings.Builder
	w.SetTraceWriter(&trace)
	w.SetMaxSteps(10_000_000)
	res := &ReplayResult{}
	var runErr error
	var oracle *Oracle
	fail := func(format string, args ...any) { runErr = errors.Join(runErr, fmt.Errorf(format, args...)) }
	err := w.Run(func() {
		ctx := context.Background()
		storeNode := w.Node(storeName)
		store := memkv.New(storeNode, memkv.Options{})
		net := newNetwork(w, NetParams{MinLatency: 100 * time.Microsecond, MaxLatency: 200 * time.Microsecond}, 3*time.Second)
		oracle = newOracle(w, store)
		hook := &execHook{Oracle: oracle}
		driver := w.Node("driver")
		types := map[string]nola.Factory{"kvcounter": actors.NewKVCounter, TypeTicker: NewTicker}
		const maxServers = model.MaxServers
		var srv [maxServers]*nola.Server
		var nodes [maxServers]*simrt.Node
		var holds [maxServers]holdCommit
		name := func(i int) string { return fmt.Sprintf("s%d", i) }
		for i := range maxServers {
			nodes[i] = w.Node(name(i))
			net.listen(name(i), nodes[i], nil)
		}
		cnode := w.Node("c0")
		client, err := nola.NewClient(nola.ClientConfig{Runtime: cnode,
			Store:     &storeLink{n: net, from: "c0", node: cnode, inner: store, storeNode: storeNode, timeout: time.Second},
			Transport: net.Transport("c0", cnode)})
		if err != nil {
			fail("client: %w", err)
			return
		}
		defer func() {
			for a := range model.MaxActors {
				v, _, _ := store.Get(ctx, oracle.keys.KV(Namespace, fmt.Sprintf("A%d", a+1), []byte("n")), 0)
				res.KV = append(res.KV, string(v.Value))
			}
		}()
		started := map[string]bool{} // "s/A" of executions started
		var healAt time.Duration     // when the held store link heals
		defer func() {
			for _, s := range srv {
				if s != nil {
					s.Halt()
				}
			}
		}()
		for _, st := range script {
			i := st.Server
			switch st.Op {
			case ScriptStart:
				sl := &storeLink{n: net, from: name(i), node: nodes[i], inner: store, storeNode: storeNode, timeout: time.Second, oracle: oracle}
				s, err := nola.NewServer(nola.ServerConfig{ID: name(i), Addr: Addr(name(i)), Runtime: nodes[i], Store: &holds[i],
					Transport: net.Transport(name(i), nodes[i]), Types: types, LeaseTTL: replayTTL, Rho: 0.25,
					Observer: hook, Mutations: mu})
				if err != nil {
					fail("server %s: %w", name(i), err)
					return
				}
				sl.incarnation = s.Incarnation
				holds[i].Store = sl
				srv[i] = s
				net.listen(name(i), nodes[i], s)
				done := driver.NewSema(0)
				nodes[i].Go("start", func() {
					defer done.Release()
					if err := s.Start(ctx); err != nil {
						fail("start %s: %w", name(i), err)
					}
				})
				if err := done.Acquire(ctx); err != nil {
					fail("start %s: %w", name(i), err)
					return
				}
			case ScriptTick:
				_ = driver.Sleep(ctx, replayTTL/model.L)
			case ScriptInvoke:
				key := fmt.Sprintf("%s/A%d", name(i), st.Actor+1)
				hook.onStart = func(ev nola.ActivationEvent) {
					if ev.ActorID != fmt.Sprintf("A%d", st.Actor+1) {
						return
					}
					started[ev.Server+"/"+ev.ActorID] = true
					hook.onStart = nil
				}
				if st.Hold {
					// The execution's fenced commit, as it is sent (after
					// its reads): hold the server's store messages.
					holds[i].arm = func() {
						net.partition(name(i), storeName, holdFor, true)
						healAt = w.Now() + holdFor
					}
				}
				cnode.Go("invoke", func() {
					cctx, cancel := cnode.WithTimeout(ctx, 10*replayTTL)
					defer cancel()
					if st.Timer {
						_, _ = client.Invoke(cctx, Namespace, fmt.Sprintf("A%d", st.Actor+1), TypeTicker, "arm", []byte(timerPeriod.String()))
						return
					}
					_, _ = client.Invoke(cctx, Namespace, fmt.Sprintf("A%d", st.Actor+1), "kvcounter", "inc", nil)
				})
				for range 1000 {
					if started[key] {
						break
					}
					_ = driver.Sleep(ctx, replayTTL/100)
				}
				if !started[key] {
					fail("step %v: the execution did not start on %s (schedule diverged)", st, name(i))
					return
				}
			case ScriptExpire:
				keys := oracle.keys
				gone := false
				for range 1000 {
					if _, found, _ := store.Get(ctx, keys.Server(name(i)), 0); !found {
						gone = true
						break
					}
					_ = driver.Sleep(ctx, replayTTL/100)
				}
				if !gone {
					fail("step %v: the lease of %s never expired", st, name(i))
					return
				}
			case ScriptFence:
				net.partition(name(i), storeName, holdFor, false)
				fenced := false
				for range 1000 {
					if srv[i] != nil && srv[i].Incarnation() == 0 {
						fenced = true
						break
					}
					_ = driver.Sleep(ctx, replayTTL/100)
				}
				if !fenced {
					fail("step %v: %s never fenced itself", st, name(i))
					return
				}
			case ScriptTimerFires:
				actor := fmt.Sprintf("A%d", st.Actor+1)
				fired := false
				hook.onStart = func(ev nola.ActivationEvent) {
					if ev.Timer && ev.ActorID == actor && ev.Server == name(i) {
						fired = true
					}
				}
				for range 2 * int(timerPeriod/(replayTTL/100)) {
					if fired {
						break
					}
					_ = driver.Sleep(ctx, replayTTL/100)
				}
				hook.onStart = nil
				res.TimerFired = fired
			case ScriptDeliver:
				// The partition ends: every held message is delivered (a
				// latency after the heal).
				_ = driver.Sleep(ctx, max(healAt-w.Now(), 0)+replayTTL/4)
			}
		}
	})
	if oracle != nil {
		res.Violations = oracle.Violations()
	}
	res.Trace = trace.String()
	return res, errors.Join(err, runErr)
}
