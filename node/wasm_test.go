package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/node"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// A node with WASM serves uploaded modules as actor types; its tokens
// guard every namespace and /metrics, which shows the connection bound.
func TestWASMTokensAndMetrics(t *testing.T) {
	n := start(t, node.Options{
		Store: node.Store{Kind: "memory"}, LeaseTTL: 30 * time.Second, WASM: &node.WASMOptions{},
		AdminToken: "admin", NamespaceTokens: map[string]string{"nst": "app"}, MaxConns: 50,
	})
	ctx := context.Background()
	app := client(t, n, "nst")
	if _, _, err := app.PutModule(ctx, "app", "kvc", wasmtest.C(t, "kvcounter")); err != nil {
		t.Fatalf("PutModule: %v", err)
	}
	for _, want := range []string{"1", "2"} {
		out, err := app.Invoke(ctx, "app", "a", "kvc", "inc", nil)
		if err != nil || string(out) != want {
			t.Fatalf("WASM kvcounter inc = %q, %v; want %s", out, err, want)
		}
	}
	if _, err := app.Invoke(ctx, "other", "a", "kvc", "inc", nil); nola.CodeOf(err) != "forbidden" {
		t.Errorf("a namespace token in another namespace: %v, want forbidden", err)
	}
	if _, err := client(t, n, "wrong").Invoke(ctx, "app", "a", "kvc", "inc", nil); nola.CodeOf(err) != "unauthorized" {
		t.Errorf("an unknown token: %v, want unauthorized", err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "nola_http_connections_max 50") ||
		!strings.Contains(string(body), "nola_http_connections ") {
		t.Errorf("/metrics: %s\n%.2000s", resp.Status, body)
	}
}
