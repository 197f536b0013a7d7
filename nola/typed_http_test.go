package nola_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// TestTypedActorOverHTTP checks the wire claims of docs/typed-actors.md:
// a typed actor behind the HTTP API answers a remote typed Call (the HTTP
// client adapted by CallerFunc) and a raw POST of the JSON alike, and its
// routing errors reach a remote caller as 400 bad_request with the text.
func TestTypedActorOverHTTP(t *testing.T) {
	c, stop := startTyped(1, map[string]nola.Factory{"tally": NewTally})
	defer stop()
	srv := httptest.NewServer(httpapi.NewHandler(c.Server(0), httpapi.Options{}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	hc := httpapi.NewClient(srv.URL, "")
	defer hc.Close()
	remote := nola.CallerFunc(func(ctx context.Context, ref nola.Ref, op string, p []byte) ([]byte, error) {
		return hc.Invoke(ctx, ref.Namespace, ref.ID, ref.Type, op, p)
	})
	ref := nola.Ref{Namespace: "demo", ID: "t1", Type: "tally"}
	got, err := nola.Call[Add, Count](ctx, remote, ref, "add", Add{By: 2})
	if err != nil || got.N != 2 {
		t.Fatalf("remote typed call = %+v, %v", got, err)
	}

	post := func(op, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/ns/demo/actors/t1/invoke/"+op+"?type=tally", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if status, body := post("add", `{"By":40}`); status != http.StatusOK || !bytes.Equal(body, []byte(`{"N":42}`)) {
		t.Fatalf("raw POST add = %d %s", status, body)
	}
	if status, body := post("get", ""); status != http.StatusOK || !bytes.Equal(body, []byte(`{"N":42}`)) {
		t.Fatalf("raw POST get with no body = %d %s", status, body)
	}
	for _, tc := range []struct{ op, body, want string }{
		{"reset", "", `unknown operation "reset" (known: add, get)`},
		{"add", `{"By":"forty"}`, `operation "add": payload is not a valid json nola_test.Add`},
	} {
		status, body := post(tc.op, tc.body)
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if status != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Code != "bad_request" {
			t.Fatalf("POST %s %s = %d %s, want 400 bad_request", tc.op, tc.body, status, body)
		}
		if !strings.Contains(e.Message, tc.want) {
			t.Fatalf("POST %s: message %q, want it to contain %q", tc.op, e.Message, tc.want)
		}
	}
	// The remote typed caller gets the same code.
	_, err = nola.Call[struct{}, Count](ctx, remote, ref, "reset", struct{}{})
	if nola.CodeOf(err) != nola.CodeBadRequest || !strings.Contains(err.Error(), "known: add, get") {
		t.Fatalf("remote unknown op: %v (code %s)", err, nola.CodeOf(err))
	}
}
