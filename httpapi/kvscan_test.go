package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// fillActor stores values on demand: payload "SIZE KEY" puts SIZE bytes
// under KEY.
type fillActor struct{}

func (fillActor) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	size, key, ok := strings.Cut(string(payload), " ")
	n, err := strconv.Atoi(size)
	if op != "put" || !ok || err != nil {
		return nil, fmt.Errorf("fill: want op put, payload \"SIZE KEY\"")
	}
	v := bytes.Repeat([]byte{'a' + byte(len(key)%26)}, n)
	return nil, ctx.Put([]byte(key), v)
}

// startFillNode runs one server with the fill actor type.
func startFillNode(t *testing.T, opts httpapi.Options) string {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	t.Cleanup(func() { _ = store.Close() })
	hs := httptest.NewUnstartedServer(nil)
	u := "http://" + hs.Listener.Addr().String()
	tr := httpapi.NewTransport(httpapi.TransportOptions{})
	srv, err := nola.NewServer(nola.ServerConfig{
		ID: "f0", Addr: u, Runtime: r, Store: store, Transport: tr, LeaseTTL: 3 * time.Second,
		Types: map[string]nola.Factory{"fill": func(nola.Ref) (nola.Actor, error) { return fillActor{}, nil }},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.SetLocal(u, srv)
	opts.Metrics = prometheus.NewRegistry()
	hs.Config.Handler = httpapi.NewHandler(srv, opts)
	hs.Start()
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		tr.Close()
	})
	return u
}

// scanPage GETs one scan page and returns it with its size in bytes.
func scanPage(t *testing.T, u string, q url.Values) (httpapi.KVScan, int) {
	t.Helper()
	resp, err := http.Get(u + "/v1/ns/fill/actors/a/kv?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scan %s: HTTP %d %s %v", q.Encode(), resp.StatusCode, b, err)
	}
	var page httpapi.KVScan
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("scan %s: %v in %.200q", q.Encode(), err, b)
	}
	return page, len(b)
}

// A scan is bounded by bytes as well as entries, and pages with a cursor:
// over values that add up to many times the bound every page stays within
// it, and paging returns every key exactly once, in order (issue 10,
// finding 10). Before the fix one page held every entry up to the limit.
func TestKVScanPagesByBytes(t *testing.T) {
	const maxBytes = 8 << 10
	u := startFillNode(t, httpapi.Options{MaxScanBytes: maxBytes})
	c := httpapi.NewClient(u, "")
	defer c.Close()
	// Keys with a zero byte and multi-byte characters, under two
	// prefixes, so that the cursor must carry arbitrary bytes.
	var keys []string
	for i := range 60 {
		k := fmt.Sprintf("p/%02d", i)
		switch i % 3 {
		case 1:
			k += "\x00z"
		case 2:
			k += "é"
		}
		if i%4 == 0 {
			k = "q/" + k
		}
		keys = append(keys, k)
		if _, err := c.Invoke(ctx(t), "fill", "a", "fill", "put", []byte("1000 "+k)); err != nil {
			t.Fatal(err)
		}
	}
	want := func(prefix string) []string {
		var out []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		// Byte order, as the store keeps them.
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j] < out[i] {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		q     url.Values
		want  []string
		bound int
	}{
		{"all, by bytes", url.Values{"limit": {"10000"}}, want(""), maxBytes},
		{"prefix, by bytes", url.Values{"prefix": {"p/"}, "limit": {"10000"}}, want("p/"), maxBytes},
		{"range, by entries", url.Values{"start": {"p/"}, "end": {"q/"}, "limit": {"2"}}, want("p/"), maxBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			q := tc.q
			for pages := 0; ; pages++ {
				if pages > len(keys) {
					t.Fatal("paging does not end")
				}
				page, size := scanPage(t, u, q)
				if size > tc.bound {
					t.Errorf("page %d is %d bytes, over the %d-byte bound", pages, size, tc.bound)
				}
				if len(page.Entries) == 0 && page.More {
					t.Fatalf("page %d: empty but more", pages)
				}
				for _, e := range page.Entries {
					got = append(got, e.Key)
				}
				if !page.More {
					break
				}
				if page.Next == "" {
					t.Fatalf("page %d: more without a cursor", pages)
				}
				q.Set("cursor", page.Next)
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("paged keys:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	// The client pages the same way.
	var got int
	q := httpapi.KVScanQuery{Limit: 10000}
	for {
		page, err := c.ScanKVPage(ctx(t), "fill", "a", q)
		if err != nil {
			t.Fatal(err)
		}
		got += len(page.Entries)
		if !page.More {
			break
		}
		q.Cursor = page.Next
	}
	if got != len(keys) {
		t.Errorf("client paging: %d entries, want %d", got, len(keys))
	}
}

// Pages of small values span several store batches; a single entry larger
// than the bound still comes through, alone on its page; bad cursors are
// bad requests.
func TestKVScanBatchesAndEdges(t *testing.T) {
	u := startFillNode(t, httpapi.Options{MaxScanBytes: 4 << 10})
	c := httpapi.NewClient(u, "")
	defer c.Close()
	for i := range 50 {
		if _, err := c.Invoke(ctx(t), "fill", "a", "fill", "put", []byte(fmt.Sprintf("1 k%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	page, _ := scanPage(t, u, url.Values{"limit": {"40"}})
	if len(page.Entries) != 40 || !page.More || page.Entries[39].Key != "k39" {
		t.Fatalf("40 small entries across batches: %d entries, more %v", len(page.Entries), page.More)
	}
	rest, _ := scanPage(t, u, url.Values{"limit": {"40"}, "cursor": {page.Next}})
	if len(rest.Entries) != 10 || rest.More || rest.Entries[0].Key != "k40" {
		t.Fatalf("the rest: %+v", rest)
	}

	if _, err := c.Invoke(ctx(t), "fill", "a", "fill", "put", []byte("10000 z-big")); err != nil {
		t.Fatal(err)
	}
	big, _ := scanPage(t, u, url.Values{"prefix": {"z"}})
	if len(big.Entries) != 1 || big.More {
		t.Fatalf("one entry over the bound: %d entries, more %v", len(big.Entries), big.More)
	}

	status := statusOf(t, u)
	for _, bad := range []string{"!!", "", url.QueryEscape("a")} {
		if got := status("GET", "/v1/ns/fill/actors/a/kv?cursor="+bad, ""); got != http.StatusBadRequest {
			t.Errorf("cursor %q: HTTP %d, want 400", bad, got)
		}
	}
	// A cursor from before the prefix is refused rather than leaking keys
	// outside it.
	if got := status("GET", "/v1/ns/fill/actors/a/kv?prefix=z&cursor="+page.Next, ""); got != http.StatusBadRequest {
		t.Errorf("cursor before the prefix: HTTP %d, want 400", got)
	}
}
