package gateway

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// sweepEvery is how often the gateway forgets settled trackers.
const sweepEvery = time.Minute

// sendScheduler sends messages at their send_at time.
type sendScheduler interface {
	// add schedules a message. It takes a copy: the caller's stays on its
	// request's stack (a pointer through this interface would move it to
	// the heap for every request).
	add(ctx context.Context, o outgoing) error
	// cancel removes a message not sent yet and reports whether it did.
	cancel(ctx context.Context, st *Status) (bool, error)
	run(ctx context.Context)
}

// scheduler sends messages at their send_at time: one goroutine and one timer
// for all of them. It lives in memory: scheduled messages that were not sent
// when the process ends stay IN_TRANSIT in the record and are not sent.
type scheduler struct {
	g *Gateway

	mu    sync.Mutex
	queue schedHeap
	byID  map[string]*outgoing
	wake  chan struct{}
}

func newScheduler(g *Gateway) *scheduler {
	return &scheduler{g: g, byID: make(map[string]*outgoing), wake: make(chan struct{}, 1)}
}

func (s *scheduler) add(_ context.Context, o outgoing) error {
	s.mu.Lock()
	s.byID[o.msg.ID] = &o
	heap.Push(&s.queue, &o)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func (s *scheduler) cancel(_ context.Context, st *Status) (bool, error) {
	id := st.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[id]; !ok {
		return false, nil
	}
	delete(s.byID, id) // its heap entry is skipped when it comes up
	return true, nil
}

// due pops the messages due at now and returns the wait until the next one.
func (s *scheduler) due(now time.Time) ([]*outgoing, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*outgoing
	for s.queue.Len() > 0 {
		o := s.queue[0]
		if o.sendAt.After(now) {
			return out, o.sendAt.Sub(now)
		}
		heap.Pop(&s.queue)
		if s.byID[o.msg.ID] == o {
			delete(s.byID, o.msg.ID)
			out = append(out, o)
		}
	}
	return out, sweepEvery
}

func (s *scheduler) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
		now := s.g.now()
		os, next := s.due(now)
		for _, o := range os {
			go s.g.dispatch(o) // dispatch waits for the connection; not in the loop
		}
		t.Reset(next)
	}
}

type schedHeap []*outgoing

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].sendAt.Before(h[j].sendAt) }
func (h schedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)        { *h = append(*h, x.(*outgoing)) }
func (h *schedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// housekeeping forgets settled trackers now and then.
func (g *Gateway) housekeeping(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.sweepLive()
		}
	}
}

// sweepLive forgets trackers that settled before the previous sweep: their
// callbacks have run by now.
func (g *Gateway) sweepLive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, lm := range g.live {
		if lm.t == nil || !lm.t.Settled() {
			continue
		}
		if lm.settledSeen {
			delete(g.live, id)
			continue
		}
		lm.settledSeen = true
	}
}
