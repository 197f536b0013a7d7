package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/race"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// The call path's shortcuts (issue 16, item 4) must answer exactly what
// the code they replace answered.

// randomString joins n pieces drawn from parts.
func randomString(rng *rand.Rand, parts []string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(parts[rng.IntN(len(parts))])
	}
	return b.String()
}

var queryParts = []string{"type", "=", "&", ";", "%", "%2", "%41", "%7", "+", "x", "t%79pe", "ty", "pe", "%zz", "==", "echo"}

func TestQueryValueMatchesParseQuery(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []string{"", "type=echo", "type=", "type", "&type=a&type=b", "type=a;b&type=c", "type=%zz&type=ok",
		"t%79pe=x", "type=a+b%21", strings.Repeat("x=1&", 150) + "type=far"}
	for range 20000 {
		cases = append(cases, randomString(rng, queryParts, rng.IntN(12)))
	}
	for _, raw := range cases {
		u := &url.URL{RawQuery: raw}
		if got, want := queryValue(u, "type"), u.Query().Get("type"); got != want {
			t.Fatalf("queryValue(%q) = %q, want %q (url.ParseQuery)", raw, got, want)
		}
	}
}

func FuzzQueryValue(f *testing.F) {
	for _, s := range []string{"type=echo", "a=1&type=%41&type=b", "type=%zz;&type=+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u := &url.URL{RawQuery: raw}
		if got, want := queryValue(u, "type"), u.Query().Get("type"); got != want {
			t.Fatalf("queryValue(%q) = %q, want %q", raw, got, want)
		}
	})
}

// emptyNameSplit is emptyName as it was, splitting the path.
func emptyNameSplit(p string) string {
	rest, ok := strings.CutPrefix(p, "/v1/ns/")
	if !ok {
		return ""
	}
	segs := strings.Split(rest, "/")
	switch {
	case segs[0] == "":
		return "namespace"
	case len(segs) < 3:
		return ""
	case segs[1] == "actors" && segs[2] == "":
		return "actor ID"
	case segs[1] == "modules" && segs[2] == "" && len(segs) == 3:
		return "module ID"
	case segs[1] == "actors" && len(segs) == 5 && segs[3] == "invoke" && segs[4] == "":
		return "operation"
	case segs[1] == "workers" && segs[2] == "":
		return "worker type"
	case segs[1] == "workers" && len(segs) == 4 && segs[3] == "":
		return "operation"
	}
	return ""
}

func TestEmptyNameMatchesSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	parts := []string{"/", "/", "actors", "modules", "workers", "invoke", "a", "x/"}
	seen := map[string]bool{}
	for range 50000 {
		p := "/v1/ns/" + randomString(rng, parts, rng.IntN(9))
		got, want := emptyName(p), emptyNameSplit(p)
		if got != want {
			t.Fatalf("emptyName(%q) = %q, want %q", p, got, want)
		}
		seen[want] = true
	}
	for _, what := range []string{"", "namespace", "actor ID", "module ID", "operation", "worker type"} {
		if !seen[what] {
			t.Errorf("no generated path had answer %q: the comparison misses a case", what)
		}
	}
}

// waitDone waits for ctx to end; a context that never ends fails the test
// when the test's own deadline nears, rather than after a guessed delay.
func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	limit := make(<-chan time.Time)
	if d, ok := t.Deadline(); ok {
		limit = time.After(time.Until(d) - 5*time.Second)
	}
	select {
	case <-ctx.Done():
	case <-limit:
		t.Fatal("the context never ended")
	}
}

func TestCallCtxReleased(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancel()
	cc := newCallCtx(parent, time.Hour)
	if d, ok := cc.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Fatalf("Deadline() = %v, %v", d, ok)
	}
	if err := cc.Err(); err != nil {
		t.Fatalf("Err() = %v before release", err)
	}
	cc.release()
	if err := cc.Err(); err != context.Canceled {
		t.Fatalf("Err() = %v after release, want Canceled", err)
	}
	select {
	case <-cc.Done(): // built after the end: closed at once
	default:
		t.Fatal("Done() is open after release")
	}
	cancel() // the parent ending later changes nothing
	if err, cause := cc.Err(), context.Cause(cc); err != context.Canceled || cause != context.Canceled {
		t.Fatalf("after Done: Err %v, Cause %v; want Canceled", err, cause)
	}
	if v := cc.Value(ctxKey{}); v != "v" {
		t.Fatalf("Value = %v, want the parent's", v)
	}
}

type ctxKey struct{}

func TestCallCtxDeadlinePassedWithoutDone(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	cc := newCallCtx(parent, -time.Millisecond)
	if err := cc.Err(); err != context.DeadlineExceeded {
		t.Fatalf("Err() = %v past the deadline, want DeadlineExceeded", err)
	}
	cancel()
	// What Err reported first stays, now and once the real context exists.
	if err := cc.Err(); err != context.DeadlineExceeded {
		t.Fatalf("Err() = %v after the parent ended too", err)
	}
	waitDone(t, cc)
	if err, cause := cc.Err(), context.Cause(cc); err != context.DeadlineExceeded || cause != context.DeadlineExceeded {
		t.Fatalf("after Done: Err %v, Cause %v; want DeadlineExceeded", err, cause)
	}
	cc.release()
	if err := cc.Err(); err != context.DeadlineExceeded {
		t.Fatalf("Err() = %v after release", err)
	}
}

func TestCallCtxParentEnds(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	cc := newCallCtx(parent, time.Hour)
	derived, stop := context.WithCancel(cc) // as the engine's forwarding does
	defer stop()
	cancel()
	waitDone(t, cc)
	waitDone(t, derived)
	if err := cc.Err(); err != context.Canceled {
		t.Fatalf("Err() = %v, want the parent's Canceled", err)
	}
	cc.release()
}

func TestCallCtxTimerFiresOnceBuilt(t *testing.T) {
	cc := newCallCtx(context.Background(), 20*time.Millisecond)
	defer cc.release()
	done := cc.Done()
	select {
	case <-done:
		if err := cc.Err(); err != context.DeadlineExceeded {
			t.Fatalf("closed before the deadline with %v", err)
		}
	default:
	}
	waitDone(t, cc)
	if err := cc.Err(); err != context.DeadlineExceeded {
		t.Fatalf("Err() = %v, want DeadlineExceeded", err)
	}
}

func TestCallCtxReleaseEndsDerived(t *testing.T) {
	cc := newCallCtx(context.Background(), time.Hour)
	derived, stop := context.WithCancel(cc)
	defer stop()
	cc.release()
	waitDone(t, derived)
	if err := cc.Err(); err != context.Canceled {
		t.Fatalf("Err() = %v after release, want Canceled", err)
	}
}

// ForkCancel's child (a forwarded call's context) has the call's deadline
// and values, ends when the parent ends, at the deadline and on its own
// cancel, and its cancel leaves the call running — without building the
// call's real context.
func TestCallCtxForkCancel(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancelParent()
	cc := newCallCtx(parent, time.Hour)
	child, cancel := cc.ForkCancel()
	if d, ok := child.Deadline(); !ok || !d.Equal(cc.deadline) {
		t.Fatalf("child Deadline() = %v, %v; want the call's %v", d, ok, cc.deadline)
	}
	if v := child.Value(ctxKey{}); v != "v" {
		t.Fatalf("child Value = %v, want the parent's", v)
	}
	if err := child.Err(); err != nil {
		t.Fatalf("child Err() = %v before anything ended", err)
	}
	cancel()
	cancel() // twice is fine
	waitDone(t, child)
	if err := child.Err(); err != context.Canceled {
		t.Fatalf("child Err() = %v after its cancel, want Canceled", err)
	}
	if err := cc.Err(); err != nil {
		t.Fatalf("call Err() = %v after its child's cancel, want nil", err)
	}
	if cc.real.Load() != nil {
		t.Fatal("ForkCancel built the call's real context")
	}

	// The parent ending ends the child.
	child, cancel = cc.ForkCancel()
	defer cancel()
	cancelParent()
	waitDone(t, child)
	if err := child.Err(); err != context.Canceled {
		t.Fatalf("child Err() = %v after the parent ended, want Canceled", err)
	}
	cc.release()

	// The deadline ends it.
	cc = newCallCtx(context.Background(), 20*time.Millisecond)
	child, cancel = cc.ForkCancel()
	defer cancel()
	waitDone(t, child)
	if err := child.Err(); err != context.DeadlineExceeded {
		t.Fatalf("child Err() = %v at the deadline, want DeadlineExceeded", err)
	}
	cc.release()

	// A call that has ended forks an ended child, with its error.
	for _, c := range []struct {
		name string
		cc   func() *callCtx
		want error
	}{
		{"released", func() *callCtx { cc := newCallCtx(context.Background(), time.Hour); cc.release(); return cc }, context.Canceled},
		{"past its deadline", func() *callCtx { return newCallCtx(context.Background(), -time.Millisecond) }, context.DeadlineExceeded},
	} {
		child, cancel := c.cc().ForkCancel()
		waitDone(t, child)
		if err := child.Err(); err != c.want {
			t.Fatalf("%s: child Err() = %v, want %v", c.name, err, c.want)
		}
		cancel()
	}
}

// ForkCancel costs fewer allocations than context.WithCancel of the call
// context, which builds the real context first (issue 16): it fails if
// ForkCancel falls back to it.
func TestCallCtxForkCancelAllocatesLess(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	per := func(fork func(*callCtx) (context.Context, context.CancelFunc)) float64 {
		return testing.AllocsPerRun(1000, func() {
			cc := newCallCtx(parent, time.Minute)
			child, cancel := fork(cc)
			cancel()
			<-child.Done() // net/http's transport waits on it
			cc.release()
		})
	}
	forked := per((*callCtx).ForkCancel)
	wrapped := per(func(cc *callCtx) (context.Context, context.CancelFunc) { return context.WithCancel(cc) })
	if forked >= wrapped {
		t.Fatalf("ForkCancel: %v allocations per forward, WithCancel of the call context %v; want fewer", forked, wrapped)
	}
	t.Logf("allocations per forward: ForkCancel %v, WithCancel %v", forked, wrapped)
}

// A call that never waits builds nothing: one allocation, the callCtx.
func TestCallCtxWarmPathAllocatesOnce(t *testing.T) {
	parent := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		cc := newCallCtx(parent, time.Minute)
		if _, ok := cc.Deadline(); !ok || cc.Err() != nil {
			t.Fatal("a fresh call context ended")
		}
		cc.release()
	})
	if allocs > 1 {
		t.Fatalf("%v allocations per call context that nobody waits on, want 1", allocs)
	}
}

func TestReadRequestBodySized(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte("12345678")))
	b, err := readRequestBody(httptest.NewRecorder(), r, 1<<10)
	if err != nil || string(b) != "12345678" || cap(b) != 8 {
		t.Fatalf("readRequestBody = %q (cap %d), %v; want the 8 bytes in an 8-byte buffer", b, cap(b), err)
	}
	// A body shorter than its Content-Length is an error, as with io.ReadAll.
	r = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte("123")))
	r.ContentLength = 8
	if _, err := readRequestBody(httptest.NewRecorder(), r, 1<<10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v, want unexpected EOF", err)
	}
	// Over the limit, declared or not: the bounded reader's error.
	for _, declared := range []int64{2 << 10, -1} {
		r = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, 2<<10)))
		r.ContentLength = declared
		var mbe *http.MaxBytesError
		if _, err := readRequestBody(httptest.NewRecorder(), r, 1<<10); !errors.As(err, &mbe) {
			t.Fatalf("Content-Length %d over the limit: %v, want *http.MaxBytesError", declared, err)
		}
	}
	// Declared beyond maxSizedBody but within the limit: read as it
	// arrives, not allocated up front.
	r = httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, 3)))
	r.ContentLength = maxSizedBody + 1
	if b, err := readRequestBody(httptest.NewRecorder(), r, 1<<20); err != nil || len(b) != 3 || cap(b) > maxSizedBody {
		t.Fatalf("large declared body: %d bytes (cap %d), %v; want 3 read as they come", len(b), cap(b), err)
	}
}

// Series appear as WithLabelValues made them: an ok series only once a
// call succeeded.
func TestMetricsSeriesMadeOnUse(t *testing.T) {
	m := &metrics{
		calls:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"path", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "l"}, []string{"path"}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.calls, m.latency)
	series := func() map[string]float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				name := mf.GetName()
				for _, l := range mt.GetLabel() {
					name += "," + l.GetValue()
				}
				out[name] = mt.GetCounter().GetValue() + float64(mt.GetHistogram().GetSampleCount())
			}
		}
		return out
	}
	m.observe(pathPublic, time.Now(), time.Now(), &nola.Error{Code: nola.CodeBadRequest})
	if got, want := series(), map[string]float64{"c,bad_request,public": 1, "l,public": 1}; !equalSeries(got, want) {
		t.Fatalf("after one rejected call: %v, want %v", got, want)
	}
	m.observe(pathPublic, time.Now(), time.Now(), nil)
	m.observe(pathPublic, time.Now(), time.Now(), nil)
	m.observe(pathWorker, time.Now(), time.Now(), nil)
	want := map[string]float64{"c,bad_request,public": 1, "c,ok,public": 2, "c,ok,worker": 1, "l,public": 3, "l,worker": 1}
	if got := series(); !equalSeries(got, want) {
		t.Fatalf("after three more: %v, want %v", got, want)
	}
}

func equalSeries(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// internalRequestQuery is internalInvoke's reading of its query as it was.
func internalRequestQuery(u *url.URL) nola.Request {
	q := u.Query()
	return nola.Request{
		Namespace: q.Get("ns"), ActorID: q.Get("id"), ActorType: q.Get("type"),
		Operation: q.Get("op"), Chain: q["chain"], Delete: q.Get("delete") == "1", Worker: q.Get("worker"),
	}
}

func TestInternalRequestMatchesQuery(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	parts := []string{"ns", "id", "type", "op", "chain", "delete", "worker", "=", "&", ";", "1", "%31", "%zz", "+", "a", "n%73"}
	cases := []string{"", "ns=a&id=b&type=c&op=d&chain=x&chain=y&delete=1", strings.Repeat("chain=c&", 120) + "ns=far"}
	for range 30000 {
		cases = append(cases, randomString(rng, parts, rng.IntN(16)))
	}
	for _, raw := range cases {
		u := &url.URL{RawQuery: raw}
		if got, want := internalRequest(u), internalRequestQuery(u); !reflect.DeepEqual(got, want) {
			t.Fatalf("internalRequest(%q) = %+v, want %+v", raw, got, want)
		}
	}
}

// internalInvokeURLValues is InternalInvokeURL as it was, through url.Values.
func internalInvokeURLValues(addr string, req nola.Request) string {
	q := url.Values{}
	q.Set("ns", req.Namespace)
	if req.Worker != "" {
		q.Set("worker", req.Worker)
	} else {
		q.Set("id", req.ActorID)
		q.Set("type", req.ActorType)
	}
	q.Set("op", req.Operation)
	for _, c := range req.Chain {
		q.Add("chain", c)
	}
	if req.Delete {
		q.Set("delete", "1")
	}
	return strings.TrimRight(addr, "/") + "/v1/internal/invoke?" + q.Encode()
}

func TestInternalInvokeURLMatchesEncode(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	parts := []string{"a", "é", " ", "&", "=", "%", "/", "+", "?", "#", ";"}
	word := func() string { return randomString(rng, parts, rng.IntN(4)) }
	for range 20000 {
		req := nola.Request{Namespace: word(), ActorID: word(), ActorType: word(), Operation: word(), Delete: rng.IntN(2) == 0}
		if rng.IntN(3) == 0 {
			req.Worker = "w" + word()
		}
		for range rng.IntN(3) {
			req.Chain = append(req.Chain, word())
		}
		got, want := InternalInvokeURL("http://h:1/", req), internalInvokeURLValues("http://h:1/", req)
		if got != want {
			t.Fatalf("InternalInvokeURL(%+v) = %q, want %q", req, got, want)
		}
		// And the server reads back what was sent.
		u, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		back := internalRequest(u)
		sent := req
		if sent.Worker != "" {
			sent.ActorID, sent.ActorType = "", ""
		}
		if !reflect.DeepEqual(back, sent) {
			t.Fatalf("read back %+v, sent %+v", back, sent)
		}
	}
}

// A parent with an earlier deadline bounds the call, as it bounds a
// context.WithDeadline of it: Deadline reports the parent's (the read
// deadline of the body and the time a forwarded call is given come from
// it), and Err reports the end at the parent's deadline before anything
// waited.
func TestCallCtxParentDeadlineEarlier(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _ := parent.Deadline()
	real, stop := context.WithDeadline(parent, time.Now().Add(time.Hour))
	defer stop()
	if d, _ := real.Deadline(); !d.Equal(want) {
		t.Fatalf("context.WithDeadline reports %v, want the parent's %v", d, want)
	}
	cc := newCallCtx(parent, time.Hour)
	defer cc.release()
	if d, ok := cc.Deadline(); !ok || !d.Equal(want) {
		t.Fatalf("Deadline() = %v, %v; want the parent's earlier %v", d, ok, want)
	}
	if d, _ := cc.derived().ctx.Deadline(); !d.Equal(want) {
		t.Fatalf("the built context's deadline is %v, want %v", d, want)
	}
}

// The internal endpoint reads its query as url.ParseQuery did, whatever
// arrives: duplicated, missing, badly escaped or semicolon pairs.
func FuzzInternalRequest(f *testing.F) {
	for _, s := range []string{
		"", "ns=a&id=b&type=c&op=d", "chain=x&chain=y&delete=1&id=a&ns=n&op=o&type=t",
		"ns=a&ns=b&id=%zz&id=c&delete=0&delete=1", "ns=a;b&ns=c", "id=%E2%82%AC&type=%2F%3F%23%26%3D&op=+",
		"worker=w&ns=n&op=o&id=ignored", "&&=&ns&id=", "n%73=x&%69d=y", "chain=&chain=%00&chain=%FF",
		strings.Repeat("chain=c&", 99) + "ns=edge", strings.Repeat("chain=c&", 100) + "ns=far",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u := &url.URL{RawQuery: raw}
		if got, want := internalRequest(u), internalRequestQuery(u); !reflect.DeepEqual(got, want) {
			t.Fatalf("internalRequest(%q) = %+v, want %+v", raw, got, want)
		}
	})
}

// What InternalInvokeURL writes is what url.Values wrote, and the
// internal endpoint reads the request back, for any names (reserved and
// non-ASCII bytes, invalid UTF-8 included).
func FuzzInternalInvokeURL(f *testing.F) {
	f.Add("ns", "id", "type", "op", "", "c1", true)
	f.Add("n s/é", "a&b=c", "t?#%", "o+p;", "", "", false)
	f.Add("\x00\xff", "%zz", "€", "", "w/ ?", "\u2028", true)
	f.Add("", "", "", "", "", "", false)
	f.Fuzz(func(t *testing.T, ns, id, typ, op, worker, chain string, del bool) {
		req := nola.Request{Namespace: ns, ActorID: id, ActorType: typ, Operation: op, Worker: worker, Delete: del}
		if chain != "" {
			req.Chain = []string{chain, chain + "2"}
		}
		got, want := InternalInvokeURL("http://h:1/", req), internalInvokeURLValues("http://h:1/", req)
		if got != want {
			t.Fatalf("InternalInvokeURL(%+v) = %q, want %q", req, got, want)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		sent := req
		if sent.Worker != "" {
			sent.ActorID, sent.ActorType = "", ""
		}
		if back := internalRequest(u); !reflect.DeepEqual(back, sent) {
			t.Fatalf("read back %+v, sent %+v", back, sent)
		}
	})
}

// muxRoute is what the API's mux makes of a POST to the escaped path p:
// the pattern it routes to and, for the invoke pattern, its path values;
// redirect is set if it answers with a redirect instead.
func muxRoute(t testing.TB, h *Handler, p string) (pattern, ns, id, op string, redirect, valid bool) {
	t.Helper()
	// As net/http's server parses a request target.
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return "", "", "", "", false, false // no request reaches a handler with this path
	}
	r := &http.Request{Method: http.MethodPost, URL: u, Host: "h", Header: http.Header{}}
	_, pattern = h.mux.Handler(r)
	// Handler neither sets the path values nor says whether it redirects:
	// serve the request through a mux with the invoke pattern alone (and
	// a catch-all, as the API's) to learn both.
	m := http.NewServeMux()
	m.HandleFunc(invokePattern, func(_ http.ResponseWriter, r *http.Request) {
		ns, id, op = r.PathValue("ns"), r.PathValue("id"), r.PathValue("op")
	})
	m.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, r)
	redirect = rec.Code == http.StatusTemporaryRedirect || rec.Code == http.StatusMovedPermanently
	return pattern, ns, id, op, redirect, true
}

const invokePattern = "POST /v1/ns/{ns}/actors/{id}/invoke/{op}"

// checkInvokeRoute fails if invokeRoute takes a path the mux would not
// route to the invoke endpoint with the same values. It reports whether
// invokeRoute took p.
func checkInvokeRoute(t testing.TB, h *Handler, p string) bool {
	t.Helper()
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return false // no request reaches a handler with this path
	}
	ns, id, op, ok := invokeRoute(u.EscapedPath())
	if !ok {
		return false
	}
	pattern, mns, mid, mop, redirect, _ := muxRoute(t, h, p)
	if redirect || pattern != invokePattern || ns != mns || id != mid || op != mop {
		t.Fatalf("invokeRoute(%q) = %q, %q, %q; the mux: pattern %q (redirect %v), values %q, %q, %q",
			p, ns, id, op, pattern, redirect, mns, mid, mop)
	}
	return true
}

// ServeHTTP routes the invoke endpoint itself: only paths the mux routes
// there, with the values the mux gives, and the usual ones among them.
func TestInvokeRouteMatchesMux(t *testing.T) {
	h := NewHandler(nil, Options{})
	for _, p := range []string{"/v1/ns/a/actors/b/invoke/c", "/v1/ns/a%2Fb/actors/%41/invoke/op%20x", "/v1/ns/%2E%2E/actors/b/invoke/c?x=1"} {
		if !checkInvokeRoute(t, h, p) {
			t.Errorf("invokeRoute refuses %q, which the mux routes to the invoke endpoint", p)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	parts := []string{"/", "/", "/", "actors", "invoke", "a", ".", "..", "%2E", "%2F", "%41", "%zz", "%", "act%6Frs", "x", "kv", "workers", "modules"}
	took := 0
	for range 20000 {
		p := "/v1/ns/" + randomString(rng, parts, rng.IntN(10))
		if rng.IntN(2) == 0 {
			p = "/v1/ns/" + randomString(rng, parts[5:], 1+rng.IntN(2)) + "/actors/" + randomString(rng, parts[5:], 1+rng.IntN(2)) +
				"/invoke/" + randomString(rng, parts, rng.IntN(3))
		}
		if checkInvokeRoute(t, h, p) {
			took++
		}
	}
	if took < 1000 {
		t.Fatalf("invokeRoute took only %d of the generated paths: the comparison tests little", took)
	}
}

func FuzzInvokeRoute(f *testing.F) {
	for _, s := range []string{"/v1/ns/a/actors/b/invoke/c", "/v1/ns/a/actors/b/invoke/c/", "/v1/ns/./actors/b/invoke/c",
		"/v1/ns/a/act%6Frs/b/invoke/c", "/v1/ns/%2E%2E/actors/b%2F/invoke/%41", "/v1/ns/a/actors//invoke/c", "/v1/ns/a/actors/b/invoke/%zz", "/v1/ns/a/actors/b/invoke/%2F", "/v1/ns/%2f/actors/b/invoke/c"} {
		f.Add(s)
	}
	h := NewHandler(nil, Options{})
	f.Fuzz(func(t *testing.T, p string) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		checkInvokeRoute(t, h, p)
	})
}

// ServeHTTP routes a canonical invoke path itself, with fewer allocations
// than the mux's route for the same request (as ServeHTTP routed it
// before: a boundedWriter, then the mux), and the same answer.
func TestInvokeRouteSkipsMuxAllocations(t *testing.T) {
	if race.Enabled {
		// The margin is 4 allocations exactly; the race detector's
		// random sync.Pool drops move either count by one now and then.
		t.Skip("allocation counts vary under the race detector")
	}
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	defer store.Close()
	const addr = "http://127.0.0.1:1"
	tr := NewTransport(TransportOptions{})
	srv, err := nola.NewServer(nola.ServerConfig{ID: "a", Addr: addr, Runtime: r, Store: store, Transport: tr,
		Types: actors.Types(), LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(addr, srv)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	h := NewHandler(srv, Options{})
	call := func(viaMux bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/ns/a/actors/e/invoke/echo?type=echo", strings.NewReader("12345678"))
		w := httptest.NewRecorder()
		if viaMux {
			h.mux.ServeHTTP(&boundedWriter{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: time.Minute}, req)
		} else {
			h.ServeHTTP(w, req)
		}
		return w
	}
	for _, viaMux := range []bool{false, true} {
		if w := call(viaMux); w.Code != http.StatusOK || w.Body.String() != "12345678" || w.Header().Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("via the mux %v: %d %q %v", viaMux, w.Code, w.Body, w.Header())
		}
	}
	direct := testing.AllocsPerRun(200, func() { call(false) })
	viaMux := testing.AllocsPerRun(200, func() { call(true) })
	// The mux's three path values, and the writer and context in one.
	if direct > viaMux-4 {
		t.Fatalf("a call by ServeHTTP's own route made %v allocations, by the mux %v: want at least 4 fewer", direct, viaMux)
	}
	t.Logf("allocations per call (request and recorder included): direct %v, mux %v", direct, viaMux)
}
