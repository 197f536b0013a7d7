package httpapi

import (
	"context"
	"net"
	"testing"

	"github.com/nolaproject/nola/nola"
)

// A forward whose deadline passed before it had a connection certainly did
// not run: a retryable timeout (issue 10, finding 7).
func TestForwardBeforeConnectionIsRetryableTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := NewTransport(TransportOptions{})
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = tr.Invoke(ctx, "http://"+ln.Addr().String(), nola.Request{Namespace: "n", ActorID: "a", ActorType: "t", Operation: "op"})
	if nola.CodeOf(err) != nola.CodeTimeout || !nola.IsRetryable(err) {
		t.Fatalf("got %v (retryable %v), want a retryable timeout", err, nola.IsRetryable(err))
	}
}
