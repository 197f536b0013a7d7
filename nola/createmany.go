package nola

import (
	"context"
	"sync/atomic"

	"github.com/nolaproject/nola/rt"
)

// CreateSpec names one actor of a CreateMany call: its ID, its type and
// its creation arguments (nil: none).
type CreateSpec struct {
	ID, Type string
	Args     []byte
}

// CreateResult is the outcome of one actor of a CreateMany call: what
// Create would have returned for it.
type CreateResult struct {
	Created bool
	Err     error
}

// MaxCreateMany bounds the actors of one CreateMany call, so that a call's
// memory and time stay proportionate; create more in several calls.
const MaxCreateMany = 1024

// createManyParallel is how many of a CreateMany call's creations are in
// flight at once: one etcd group-commit batch's worth (etcd's default of
// 128 operations per transaction), so that a single call fills batches.
const createManyParallel = 128

// CreateMany creates the actors specs name in namespace ns, each exactly
// as Create would (same validation, same outcome: results[i] is what
// Create returned for specs[i]), with many creations in flight at once.
// Each is still its own placement commit with its own compares; on etcd
// the concurrent commits share transactions through group commit, so one
// caller creates actors at many times the rate of calling Create in a
// loop (bench/README.md). The call as a whole fails, with a bad_request
// and nothing created, only if ns is invalid or specs holds more than
// MaxCreateMany actors.
func (c *Client) CreateMany(ctx context.Context, ns string, specs []CreateSpec) ([]CreateResult, error) {
	if err := checkName("namespace", ns, c.limits, false); err != nil {
		return nil, err
	}
	if len(specs) > MaxCreateMany {
		return nil, newErr(CodeBadRequest, false, nil, "CreateMany of %d actors exceeds the limit of %d; split it into several calls", len(specs), MaxCreateMany)
	}
	results := make([]CreateResult, len(specs))
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(specs) {
				return
			}
			s := specs[i]
			results[i].Created, results[i].Err = c.Create(ctx, ns, s.ID, s.Type, s.Args)
		}
	}
	workers := min(len(specs), createManyParallel)
	if workers <= 1 {
		work()
		return results, nil
	}
	// Tasks through the runtime (the simulator's stays deterministic);
	// this goroutine is one of the workers.
	done := make([]*rt.Future[struct{}], workers-1)
	for w := range done {
		done[w] = rt.NewFuture[struct{}](c.rt)
		c.rt.Go("create many", func() {
			work()
			done[w].Resolve(struct{}{}, nil)
		})
	}
	work()
	for _, f := range done {
		// Not the caller's context: every result must be written before
		// results is returned (each Create ends soon after ctx does).
		_, _ = f.Wait(context.Background())
	}
	return results, nil
}
