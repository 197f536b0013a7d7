// Package nemesis injects real faults into real processes: a TCP proxy per
// link whose partitions, latency and connection loss the caller controls;
// a private network of Linux network namespaces (Netns) whose partitions
// and single-packet loss are nft rules; process kill/restart and
// pause/resume; and a seeded schedule that runs them and logs each fault's
// start and end. cmd/jepsen-lite drives it.
//
// Unlike the parent package faultinject (store wrappers that run under
// the simulator), this package reaches real time, the network and
// processes, and must never be imported by engine code.
package nemesis

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its listen address to a target. It
// starts healthy. A partition (SetCut) blackholes the link: bytes stop
// flowing both ways on open connections and new connections are accepted
// but never forwarded, so peers see a hang (as with dropped packets), not
// a refusal; on heal every connection opened before or during the cut is
// reset, as TCP connections that timed out would be. Latency delays every
// chunk in both directions; loss resets a connection with some
// probability per chunk (a proxy cannot drop single packets of a TCP
// stream; a reset is what sustained loss turns into).
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cut     bool
	healed  chan struct{} // closed on heal; replaced on each cut
	delay   time.Duration
	loss    float64
	rng     *rand.Rand
	conns   map[*link]struct{}
	closed  bool
	closing chan struct{} // closed by Close
	wg      sync.WaitGroup
	accepts int64
}

type link struct {
	a, b    net.Conn
	stalled bool // saw a cut: reset on heal
	once    sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.a.Close()
		if l.b != nil {
			l.b.Close()
		}
	})
}

// NewProxy listens on listen ("127.0.0.1:0" for a free port) and forwards
// to target. seed drives the loss decisions.
func NewProxy(listen, target string, seed uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}, healed: make(chan struct{}), closing: make(chan struct{}),
		rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the listen address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is where the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// SetCut partitions (true) or heals (false) the link.
func (p *Proxy) SetCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cut == p.cut {
		return
	}
	p.cut = cut
	if cut {
		p.healed = make(chan struct{})
		for l := range p.conns {
			l.stalled = true
		}
		return
	}
	close(p.healed)
	for l := range p.conns {
		if l.stalled {
			l.close()
		}
	}
}

// SetDelay adds d to every chunk forwarded (0: none).
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetLoss resets a connection with probability prob per forwarded chunk.
func (p *Proxy) SetLoss(prob float64) {
	p.mu.Lock()
	p.loss = prob
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		close(p.closing)
	}
	p.closed = true
	if p.cut {
		p.cut = false
		close(p.healed)
	}
	for l := range p.conns {
		l.close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		l := &link{a: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[l] = struct{}{}
		l.stalled = p.cut
		p.accepts++
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// gate blocks while the link is cut; false: the connection must close.
func (p *Proxy) gate(l *link) (delay time.Duration, ok bool) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return 0, false
		}
		if !p.cut {
			if l.stalled {
				p.mu.Unlock()
				return 0, false
			}
			lost := p.loss > 0 && p.rng.Float64() < p.loss
			d := p.delay
			p.mu.Unlock()
			return d, !lost
		}
		healed := p.healed
		p.mu.Unlock()
		<-healed
	}
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	if _, ok := p.gate(l); !ok {
		return
	}
	b, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	l.b = b
	closed := p.closed
	p.mu.Unlock()
	if closed {
		b.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pipe(l, l.b, l.a); done <- struct{}{} }()
	go func() { p.pipe(l, l.a, l.b); done <- struct{}{} }()
	<-done
	l.close()
	<-done
}

// chunk is bytes read from one side, due for the other at due.
type chunk struct {
	b   []byte
	due time.Time
	err error
}

// pipe copies src to dst. A reader stamps each chunk when it arrives and
// queues it (bounded: backpressure as a slow link would give); the writer
// forwards it once the delay set at arrival has passed. So latency is not
// additive — a chunk waits d after it arrived, not d after the one before
// it — and bytes that entered the link before the sender gave up still
// reach the other side late, as on a slow network (a write held this way
// is how a stale commit can reach etcd after its lease expired).
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	queue := make(chan chunk, 64)
	stop := make(chan struct{})
	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		defer close(queue)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			c := chunk{err: err}
			if n > 0 {
				c.b = append([]byte(nil), buf[:n]...)
				p.mu.Lock()
				c.due = time.Now().Add(p.delay)
				p.mu.Unlock()
			}
			select {
			case queue <- c:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer reader.Wait()
	defer close(stop)
	for c := range queue {
		if len(c.b) > 0 {
			if _, ok := p.gate(l); !ok {
				l.close()
				return
			}
			if w := time.Until(c.due); w > 0 {
				t := time.NewTimer(w)
				select {
				case <-t.C:
				case <-p.closing:
					t.Stop()
					l.close()
					return
				}
			}
			if _, werr := dst.Write(c.b); werr != nil {
				l.close()
				return
			}
		}
		if c.err != nil {
			if !errors.Is(c.err, io.EOF) {
				l.close()
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}
