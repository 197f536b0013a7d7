package storeless

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Defaults of the background module pushes (RouterConfig).
const (
	defaultPushTimeout = 10 * time.Second
	defaultPushRetries = 3
	defaultPushBackoff = 200 * time.Millisecond
	// maxTombstones bounds the deleted module paths a router remembers
	// to push to members that were down during the deletion.
	maxTombstones = 4096
)

// pusher reconciles members' module sets with this server's in the
// background, so that a member that hangs cannot stall the membership
// rounds (and with them the detection of every other member's failure).
//
// Each member has at most one worker goroutine and a queue of one
// pending sync: a sync copies the module set as it is when the sync
// starts, so further requests while one runs coalesce into one more
// (the queue is bounded by construction). Each push is bounded by
// timeout and retried at most retries times with doubling backoff;
// refusals (4xx) are not retried. Close cancels the workers and waits
// for them: every goroutine the pusher starts ends there.
type pusher struct {
	r       *Router
	timeout time.Duration
	retries int
	backoff time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	running map[string]bool // member → a worker runs
	again   map[string]bool // member → sync again when the worker is done
	idle    chan struct{}   // closed when no worker runs (nil: none ran yet)
}

func newPusher(r *Router, timeout time.Duration, retries int, backoff time.Duration) *pusher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pusher{r: r, timeout: timeout, retries: retries, backoff: backoff, ctx: ctx, cancel: cancel,
		running: map[string]bool{}, again: map[string]bool{}}
	return p
}

// kick asks for member's module set to be reconciled, without waiting.
func (p *pusher) kick(member string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return
	case p.running[member]:
		p.again[member] = true
		return
	}
	if len(p.running) == 0 {
		p.idle = make(chan struct{})
	}
	p.running[member] = true
	p.wg.Add(1)
	go p.work(member)
}

func (p *pusher) work(member string) {
	defer p.wg.Done()
	for {
		p.sync(member)
		p.mu.Lock()
		if p.again[member] && !p.closed {
			delete(p.again, member)
			p.mu.Unlock()
			continue
		}
		delete(p.again, member)
		delete(p.running, member)
		if len(p.running) == 0 {
			close(p.idle)
		}
		p.mu.Unlock()
		return
	}
}

// wait returns once no sync runs (or ctx ends).
func (p *pusher) wait(ctx context.Context) error {
	p.mu.Lock()
	idle := p.idle
	p.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pusher) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// sync sends member every module this server holds and every deletion
// it remembers. Uploads are idempotent (identical bytes are no change),
// and a deleted ID can never be uploaded again (modules.ErrDeletedID), so
// a deletion is final everywhere and the order of the pushes does not
// matter.
func (p *pusher) sync(member string) {
	mods, gone := p.r.moduleSet()
	for path, body := range mods {
		p.push(member, http.MethodPut, path, body)
	}
	for _, path := range gone {
		p.push(member, http.MethodDelete, path, nil)
	}
}

func (p *pusher) push(member, method, path string, body []byte) {
	backoff := p.backoff
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
		err := p.r.send(ctx, method, member, path, body)
		cancel()
		var st *statusError
		switch {
		case err == nil:
			return
		case method == http.MethodDelete && errors.As(err, &st) && st.code == http.StatusNotFound:
			return // never had it, or deleted already
		case p.ctx.Err() != nil:
			return
		case errors.As(err, &st) && st.code/100 == 4, attempt >= p.retries:
			p.r.cfg.Logger.Warn("store-less: copying a module to a member failed", "member", member,
				"method", method, "path", path, "attempts", attempt+1, "err", err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return
		}
		backoff *= 2
	}
}
