package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nolaproject/nola/httpapi"
)

// TestOverrunDoesNotPoisonKeepAlive covers a short body of declared
// length, which readRequestBody reads with io.ReadFull. The handler skips
// clearing the read deadline whenever net/http's own HTTP/1 body type
// reached EOF without error (clearsOnEOF), so the other ways a body is
// read must leave the connection unpoisoned too: a declared body over
// maxSizedBody (read through http.MaxBytesReader), a chunked body of
// unknown length, and a body behind "Expect: 100-continue" (another body
// type, which the handler clears itself).
func TestOverrunDoesNotPoisonKeepAliveBodyShapes(t *testing.T) {
	large := strings.Repeat("x", 100<<10)
	for _, c := range []struct {
		name    string
		body    string
		chunked bool
		expect  bool
	}{
		{"large", large, false, false},
		{"chunked", "payload", true, false},
		{"chunked-large", large, true, false},
		{"expect-continue", "payload", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := startOverrunNode(t, httpapi.Options{})
			hc := oneConnClient(t)
			base := n.url + "/v1/ns/ka/actors/"
			send := func(url, timeoutMs string) (int, string) {
				var body io.Reader = strings.NewReader(c.body)
				if c.chunked {
					body = io.MultiReader(body) // unknown length: sent chunked
				}
				req, err := http.NewRequest(http.MethodPost, url, body)
				if err != nil {
					t.Fatal(err)
				}
				if c.chunked && req.ContentLength != 0 {
					t.Fatalf("request length %d, want unknown (chunked)", req.ContentLength)
				}
				req.Header.Set(httpapi.HeaderTimeout, timeoutMs)
				if c.expect {
					req.Header.Set("Expect", "100-continue")
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			// The overrunning call's deadline leaves time to read the body
			// (else the read fails and the server rightly closes).
			if code, b := send(base+"b1/invoke/wait?type=block", "1000"); code == http.StatusOK {
				t.Fatalf("overrunning call: HTTP %d %s, want an error", code, b)
			}
			if code, b := send(base+"c1/invoke/inc?type=counter", "10000"); code != http.StatusOK {
				t.Fatalf("next call on the connection: HTTP %d %s", code, b)
			}
			if got := len(n.ln.accepted()); got != 1 {
				t.Errorf("%d connections, want 1 (the keep-alive connection was dropped)", got)
			}
		})
	}
}
