// Package groupcommit is the group commit that the store implementations
// share: concurrent Commit calls queue their batches, and one committer
// goroutine writes as many as are waiting in one transaction.
package groupcommit

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/xmpptrack/xmpptrack/store"
)

// MaxGroup bounds the batches of one group commit.
const MaxGroup = 512

// Request is a batch waiting for the committer.
type Request struct {
	Batch *store.Batch
	state atomic.Int32 // queued, taken (the committer answers), cancelled
	done  chan error
}

const (
	queued int32 = iota
	taken
	cancelled
)

// NewRequest returns a request for b as Commit queues it, for a caller
// that hands it to the committer's function itself (tests); Wait returns
// its outcome.
func NewRequest(b *store.Batch) *Request {
	return &Request{Batch: b, done: make(chan error, 1)}
}

// Wait returns the outcome the committer answered.
func (r *Request) Wait() error { return <-r.done }

// Answer reports the outcome of the request's batch to its Commit call.
// The committer calls it once for every request it was handed.
func (r *Request) Answer(err error) { r.done <- err }

// Queue is the queue between Commit calls and the committer of one store.
type Queue struct {
	life context.Context // the store's: ends with Close
	reqs chan *Request
}

// New returns a queue for a store whose life ends with ctx.
func New(life context.Context) *Queue {
	return &Queue{life: life, reqs: make(chan *Request, 1024)}
}

// Commit implements store.Store.Commit on top of the queue. Once the
// committer took a batch, Commit waits for its outcome even if ctx ends: a
// batch is either refused before anything happened or its real result is
// returned, never reported cancelled while it may still be committed.
func (q *Queue) Commit(ctx context.Context, b *store.Batch) error {
	if b == nil {
		return fmt.Errorf("%w: nil batch", store.ErrInvalid)
	}
	if err := b.Validate(); err != nil {
		return err
	}
	if q.life.Err() != nil {
		return store.ErrClosed
	}
	if len(b.Messages)+len(b.Changes)+len(b.Written)+len(b.Sessions) == 0 {
		return nil
	}
	r := NewRequest(b)
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-q.life.Done():
		return store.ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return ctx.Err()
		}
	case <-q.life.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return store.ErrClosed
		}
	}
	return <-r.done
}

// Run hands commit the queued batches, as many as are waiting (at most
// MaxGroup), until the store's life ends. commit must Answer every request
// it is given; requests whose caller gave up are left out.
func (q *Queue) Run(commit func(group []*Request)) {
	group := make([]*Request, 0, MaxGroup)
	for {
		select {
		case <-q.life.Done():
			return
		case r := <-q.reqs:
			group = append(group[:0], r)
		}
		// Let the goroutines that are ready to run (callers about to
		// commit, typically) run first: on a busy process the group then
		// holds them too, instead of a transaction each. On an idle one
		// nothing else is ready and this costs nothing.
		runtime.Gosched()
	more:
		for len(group) < MaxGroup {
			select {
			case r := <-q.reqs:
				group = append(group, r)
			default:
				break more
			}
		}
		live := group[:0]
		for _, r := range group {
			if r.state.CompareAndSwap(queued, taken) {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			commit(live)
		}
		clear(group)
	}
}
