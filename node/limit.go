package node

import (
	"net"
	"sync"
	"sync/atomic"
)

// limitListener accepts at most max connections at once: Accept waits for
// a served connection to close before it takes the next one from the
// kernel's accept queue. A flood of connections then waits there instead
// of using up the process's file descriptors, which the embedded etcd
// needs to stay alive.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
	open  atomic.Int64
	peak  atomic.Int64
}

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	n := l.open.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &limitConn{Conn: c, l: l}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back on its first Close.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}

// connBound is the default connection bound for a soft descriptor limit:
// a quarter of the limit (at most 256) is kept for etcd's files and
// connections and the store client, and the rest is halved because every
// call served may open one connection to another server.
func connBound(fdLimit uint64) int {
	reserve := min(fdLimit/4, 256)
	n := (fdLimit - reserve) / 2
	return int(max(n, 8))
}
