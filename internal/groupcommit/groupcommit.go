// Package groupcommit is the group commit that the store implementations
// share: concurrent Commit calls queue their batches (and ClaimKey calls
// their keys, see Queue.Claim), and one committer goroutine writes as many
// as are waiting in one transaction.
package groupcommit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// MaxGroup bounds the requests (batches and claims) of one group commit.
const MaxGroup = 512

// Request is a batch, or a key to claim, waiting for the committer.
type Request struct {
	// Batch is the batch to commit; nil for a claim.
	Batch *store.Batch
	// Key is the key to claim (see Queue.Claim); nil for a batch. Before it
	// answers a claim without an error, the committer sets Value and
	// Claimed: ClaimKey's results.
	Key     *store.Key
	Value   string
	Claimed bool

	state atomic.Int32 // queued, taken (the committer answers), cancelled
	done  chan error
	q     *Queue // the queue that Commit put it in; nil for NewRequest's
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

// NewClaim returns a request for claiming k as Claim queues it, for a
// caller that hands it to the committer's function itself (tests).
func NewClaim(k store.Key) *Request {
	return &Request{Key: &k, done: make(chan error, 1)}
}

// Wait returns the outcome the committer answered.
func (r *Request) Wait() error { return <-r.done }

// Answer reports the outcome of the request's batch to its Commit call.
// The committer calls it once for every request it was handed.
func (r *Request) Answer(err error) {
	if r.q != nil {
		r.q.answering()
	}
	r.done <- err
}

// Queue is the queue between Commit calls and the committer of one store.
type Queue struct {
	life context.Context // the store's: ends with Close
	reqs chan *Request

	// busy is held by whoever runs the commit function: the committer
	// goroutine (Run) or a Commit call that commits its batch itself
	// (see Inline). It orders their uses of the store's writer.
	busy sync.Mutex
	// pending counts the requests queued (from before they enter reqs)
	// that Run has not finished with: while there is one, Commit queues
	// too, so that a caller never overtakes a batch queued before it.
	pending atomic.Int32
	// inline, if set (see Inline), is the commit function that a Commit
	// call finding the queue empty and the committer idle runs itself.
	inline func(group []*Request)
	// refill: see Refill.
	refill bool
	// answered is set by a group's first answer (Run clears it before
	// the commit), which notes in waiting how many requests were queued
	// then: those that came while the commit ran. The callers it answers
	// queue their next batches only later.
	answered atomic.Bool
	waiting  atomic.Int32
}

// answering notes, at a group's first answer, the requests queued.
func (q *Queue) answering() {
	if q.refill && q.answered.CompareAndSwap(false, true) {
		q.waiting.Store(int32(len(q.reqs)))
	}
}

// Refill makes the committer wait, before a group commit, for the callers
// that the previous one answered: a loop of concurrent senders (each
// Commit call followed by the next) then shares one transaction per round
// instead of splitting into two halves that alternate, the callers queued
// while a commit ran and those it answered. It waits only after a group
// of at least refillMin requests, for as many requests as the previous
// group and those that queued while it was committed (counted at its
// first answer, before the callers it answers can queue again), and at
// most half the previous commit's duration (at most refillMax): a
// sequential caller never waits, and a lone caller after a burst waits
// once.
//
// Callers that do not come back (each sends once: requests of a web
// service, say) never fill such a wait: in half a commit's time, requests
// that arrive evenly fill about half of what it waits for. So after a
// wait that gathered half or less, the committer waits not at all for
// the next round, then 2, 4 and at most refillPause rounds after each
// further such wait; a wait that paid halves the next pause. How often
// such callers still wait depends on how they arrive (random arrivals
// fill some waits by chance): their mean Commit latency rose about 4% in
// a model of even and of random arrivals, and in the rounds that wait
// each of them pays the whole wait, so that their p99 and maximum
// latency rise by up to half a commit.
//
// Worth it where a transaction's fixed cost is large against the callers'
// time between two commits (a database server's round trip, flush and
// call set-up); call Refill before Run.
func (q *Queue) Refill() { q.refill = true }

const (
	refillMin   = 4
	refillMax   = 2 * time.Millisecond
	refillPause = 8
)

// refiller is the committer's state for Refill.
type refiller struct {
	target int           // the requests expected in the next group; 0: do not wait
	took   time.Duration // the last commit's duration
	skip   int           // rounds left without waiting
	pause  int           // the rounds of the last pause
	timer  *time.Timer   // made on first use
}

// next sets the target of the next group after a commit of answered
// requests, with queued requests waiting.
func (rf *refiller) next(queued, answered int) {
	rf.target = 0
	if rf.skip > 0 {
		rf.skip--
		return
	}
	if answered >= refillMin {
		rf.target = min(queued+answered, MaxGroup)
	}
}

// Inline makes a Commit call that finds no batch queued and the committer
// idle run commit on its own goroutine, with its batch alone, instead of
// handing the batch to the committer goroutine and waiting for its answer:
// a lone caller (a sequential sender) then pays no switch to the committer
// and back, two goroutine wake-ups per commit. A call that finds the
// committer busy or batches queued queues its batch as before, so
// concurrent callers still share transactions. commit must be the function
// Run gets; they never run at the same time. Call Inline before the first
// Commit.
func (q *Queue) Inline(commit func(group []*Request)) { q.inline = commit }

// Stop waits for a Commit call running the commit function itself (see
// Inline) to finish. Call it once the store's life ended, before the
// store closes what commit uses: later calls find the life ended and
// commit nothing.
func (q *Queue) Stop() {
	q.busy.Lock()
	q.busy.Unlock()
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
	return q.submit(ctx, NewRequest(b))
}

// Claim implements store.Store.ClaimKey on top of the queue: the claim is
// an item of a group like a batch, in the same transactions as the
// batches queued with it (one for the claims of concurrent requests, not
// one each), answered with its result. Like a batch, once the committer
// took it, Claim returns its real outcome even if ctx ends.
func (q *Queue) Claim(ctx context.Context, k store.Key) (value string, claimed bool, err error) {
	if err := k.Validate(); err != nil {
		return "", false, err
	}
	if q.life.Err() != nil {
		return "", false, store.ErrClosed
	}
	r := NewClaim(k)
	if err := q.submit(ctx, r); err != nil {
		return "", false, err
	}
	return r.Value, r.Claimed, nil
}

// submit hands r to the commit function (Inline) or to the committer, and
// returns its outcome.
func (q *Queue) submit(ctx context.Context, r *Request) error {
	r.q = q
	if q.inline != nil && q.pending.Load() == 0 && q.busy.TryLock() {
		if q.life.Err() != nil { // Stop is waiting, or has returned
			q.busy.Unlock()
			return store.ErrClosed
		}
		if err := ctx.Err(); err != nil { // refused before anything happened
			q.busy.Unlock()
			return err
		}
		r.state.Store(taken)
		func() {
			// A panic of the commit function goes on to the caller (which
			// may recover it) without leaving the queue locked.
			defer q.busy.Unlock()
			q.inline([]*Request{r})
		}()
		return <-r.done
	}
	// A ctx already ended is refused here, as on the inline path: the
	// select below picks at random among ready cases and could queue it.
	if err := ctx.Err(); err != nil {
		return err
	}
	q.pending.Add(1)
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		q.pending.Add(-1)
		return ctx.Err()
	case <-q.life.Done():
		q.pending.Add(-1)
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

// Run hands commit the queued requests, as many as are waiting (at most
// MaxGroup; with Refill, once as many have come as it expects, or its
// wait ended), until the store's life ends. commit must Answer every request
// it is given; requests whose caller gave up are left out. A group holds
// batches and, from a store that calls Claim, claims (Key set), in the
// order they were queued.
func (q *Queue) Run(commit func(group []*Request)) {
	group := make([]*Request, 0, MaxGroup)
	var rf refiller
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
		if len(group) < rf.target {
			group = q.fill(group, &rf)
			if q.life.Err() != nil {
				return // closed while waiting: the callers return ErrClosed
			}
		}
		live := group[:0]
		for _, r := range group {
			if r.state.CompareAndSwap(queued, taken) {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			q.busy.Lock()
			var began time.Time
			if q.refill {
				began = time.Now()
				q.answered.Store(false)
				q.waiting.Store(int32(len(q.reqs))) // if nothing is answered
			}
			commit(live)
			if q.refill {
				rf.took = time.Since(began)
			}
			q.busy.Unlock()
		}
		if q.refill {
			rf.next(int(q.waiting.Load()), len(live))
		}
		q.pending.Add(-int32(len(group)))
		clear(group)
	}
}

// fill adds requests to group as they come, until it holds rf.target, or
// half the last commit's duration (at most refillMax) has passed, or the
// queue's life ended; a wait that gathered less than half of what it
// waited for starts a pause (see Refill).
func (q *Queue) fill(group []*Request, rf *refiller) []*Request {
	wait := min(rf.took/2, refillMax)
	if rf.timer == nil {
		rf.timer = time.NewTimer(wait)
	} else {
		rf.timer.Reset(wait)
	}
	defer rf.timer.Stop()
	before := len(group)
	defer func() {
		if 2*(len(group)-before) <= rf.target-before {
			rf.pause = min(max(2*rf.pause, 1), refillPause)
			rf.skip = rf.pause
		} else {
			rf.pause /= 2 // one lucky wait does not end a pause's growth
		}
	}()
	for len(group) < rf.target {
		select {
		case r := <-q.reqs:
			group = append(group, r)
		case <-rf.timer.C:
			return group
		case <-q.life.Done():
			return group
		}
	}
	return group
}
