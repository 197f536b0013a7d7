package nemesis

import (
	"bufio"
	"context"
	"io"
	"net"
	"reflect"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
}

func TestProxyCutHealResets(t *testing.T) {
	p, err := NewProxy("127.0.0.1:0", echoServer(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrip(t, c, r)
	p.SetCut(true)
	p.SetCut(false)
	// A connection that lived through a cut is reset on heal.
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection survived a partition")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	roundTrip(t, c2, bufio.NewReader(c2))
}

func TestProxyLossResets(t *testing.T) {
	p, err := NewProxy("127.0.0.1:0", echoServer(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetLoss(1)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping\n"))
	if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatal("a chunk passed a link with loss 1")
	}
}

func TestPlanIsSeeded(t *testing.T) {
	cands := []*FuncFault{{K: "a", Resource: []string{"x"}}, {K: "b", Resource: []string{"y"}}, {K: "c", Resource: []string{"x", "y"}}}
	a := Plan(7, time.Minute, 5*time.Second, time.Second, 8*time.Second, 2, cands)
	b := Plan(7, time.Minute, 5*time.Second, time.Second, 8*time.Second, 2, cands)
	c := Plan(8, time.Minute, 5*time.Second, time.Second, 8*time.Second, 2, cands)
	if !reflect.DeepEqual(a, b) || reflect.DeepEqual(a, c) || len(a) == 0 {
		t.Fatalf("plans: %v / %v / %v", a, b, c)
	}
	// No two overlapping steps share a resource.
	for i, s := range a {
		for j, o := range a {
			if i != j && o.At < s.At+s.Hold && s.At < o.At+o.Hold {
				for _, r := range cands[s.Fault].Resource {
					for _, q := range cands[o.Fault].Resource {
						if r == q {
							t.Fatalf("steps %v and %v share %s", s, o, r)
						}
					}
				}
			}
		}
		if s.At+s.Hold > time.Minute {
			t.Fatalf("step %v past the span", s)
		}
	}
}

// Bytes that entered a slow link before their sender hung up still reach
// the other side, in order: how a delayed commit reaches the store late.
func TestProxySlowDeliversAfterSenderLeft(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	p, err := NewProxy("127.0.0.1:0", ln.Addr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetDelay(50 * time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one ", "two ", "three"} {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if s := <-got; s != "one two three" {
		t.Fatalf("target got %q", s)
	}
}

// TestRunLogsTargetPickedAtStart: a fault that picks its target when it
// starts (the owner of an actor, the etcd leader) is logged with it.
func TestRunLogsTargetPickedAtStart(t *testing.T) {
	f := &FuncFault{K: "k", T: "unknown", StopFn: func(context.Context) error { return nil }}
	f.StartFn = func(context.Context) error { f.T = "s2"; return nil }
	ev := Run(context.Background(), time.Now(), []Step{{At: 0, Hold: time.Millisecond}}, []*FuncFault{f}, nil)
	if len(ev) != 1 || ev[0].Target != "s2" {
		t.Fatalf("events %+v; want one on s2", ev)
	}
}
