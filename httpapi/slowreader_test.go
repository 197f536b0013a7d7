package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// bigModules serves one module far larger than loopback socket buffers,
// and says when a Get starts.
type bigModules struct {
	bin  []byte
	gets chan struct{}
}

func (m *bigModules) Put(context.Context, string, string, []byte) (httpapi.ModuleInfo, bool, error) {
	return httpapi.ModuleInfo{}, false, &nola.Error{Code: nola.CodeBadRequest, Message: "read-only"}
}

func (m *bigModules) Get(_ context.Context, ns, id string) ([]byte, httpapi.ModuleInfo, error) {
	select {
	case m.gets <- struct{}{}:
	default:
	}
	return m.bin, httpapi.ModuleInfo{Namespace: ns, ID: id, Size: len(m.bin)}, nil
}

func (m *bigModules) List(context.Context, string) ([]httpapi.ModuleInfo, error) { return nil, nil }

// startModuleServer runs a handler over mods; the returned channel gets a
// value each time a request's handler returns.
func startModuleServer(t *testing.T, opts httpapi.Options) (url string, returned <-chan struct{}) {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	hs := httptest.NewUnstartedServer(nil)
	url = "http://" + hs.Listener.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	t.Cleanup(tr.Close)
	srv, err := nola.NewServer(nola.ServerConfig{ID: "m0", Addr: url, Runtime: r, Store: store,
		Transport: tr, LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.NewHandler(srv, opts)
	ret := make(chan struct{}, 16)
	hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ret <- struct{}{} }()
		api.ServeHTTP(w, r)
	})
	hs.Start()
	t.Cleanup(hs.Close)
	return url, ret
}

// stalledGet sends a module GET on a raw connection and never reads the
// answer.
func stalledGet(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "GET /v1/ns/demo/modules/big HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// A client that never reads a module download is cut off by the write
// timeout: the handler returns, and its module's bytes are released
// (issue 10, finding 5). Before the fix it waited for the client forever.
func TestStalledModuleReaderIsCutOff(t *testing.T) {
	mods := &bigModules{bin: make([]byte, 64<<20), gets: make(chan struct{}, 1)}
	url, returned := startModuleServer(t, httpapi.Options{Modules: mods, WriteTimeout: 50 * time.Millisecond})
	stalledGet(t, url)
	select {
	case <-returned:
	case <-time.After(time.Minute): // a failure bound, not a synchronisation
		t.Fatal("the handler of a client that does not read did not return")
	}
}

// Module downloads in progress are bounded: with the one slot held by a
// client that does not read, another download waits, and answers a
// retryable timeout at its deadline; once the slot is free it is served.
func TestModuleDownloadsAreBounded(t *testing.T) {
	mods := &bigModules{bin: make([]byte, 64<<20), gets: make(chan struct{}, 1)}
	url, returned := startModuleServer(t, httpapi.Options{Modules: mods, MaxModuleDownloads: 1, WriteTimeout: time.Hour})
	stalled := stalledGet(t, url)
	<-mods.gets // the stalled download holds the slot until its handler returns

	// The server's deadline, not the client's: the answer is the server's.
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/ns/demo/modules/big", nil)
	req.Header.Set(httpapi.HeaderTimeout, "20")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(httpapi.HeaderRetryable) != "true" {
		t.Fatalf("download past the bound: HTTP %d, retryable %q; want a retryable 504", resp.StatusCode, resp.Header.Get(httpapi.HeaderRetryable))
	}
	<-returned // the waiting download's handler
	_ = stalled.Close()
	<-returned // the stalled one's
	c := httpapi.NewClient(url, "")
	defer c.Close()
	// 64 MiB under -race on a loaded machine can take longer than ctx's
	// 10 s: this bound only ends a hang, it synchronises nothing.
	dl, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := c.GetModule(dl, "demo", "big")
	if err != nil || len(got) != len(mods.bin) {
		t.Fatalf("download once the slot is free: %d bytes, %v", len(got), err)
	}
}
