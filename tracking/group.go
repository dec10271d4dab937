package tracking

import (
	"log/slog"
	"sync"
)

// group is what trackers share: one lock and one ordered callback queue. A
// Registry is one group; a tracker from NewMessageTracker has its own.
type group struct {
	mu      sync.Mutex
	queue   []change // state changes whose callbacks have not run, oldest first
	spare   []change // the previous queue's storage, reused
	running bool     // a goroutine is running callbacks
	hook    func(t *MessageTracker, from, to MessageState, resp *Response)
	log     *slog.Logger
	reg     *Registry // nil for standalone trackers
}

// change is one state change waiting for its callbacks.
type change struct {
	t        *MessageTracker
	from, to MessageState
	resp     *Response
	cbs      []func(from, to MessageState, resp *Response)
}

// unlock finishes a locked operation: the registry sweeps what settled, the
// lock is released, and queued callbacks start on a goroutine of their own.
// Callbacks therefore never run on the goroutine that reported the evidence,
// and at most one goroutine per group runs them, so they run in transition
// order. No goroutine exists while the queue is empty.
func (g *group) unlock() {
	if g.reg != nil {
		g.reg.tidy()
	}
	start := len(g.queue) > 0 && !g.running
	if start {
		g.running = true
	}
	g.mu.Unlock()
	if start {
		go g.runCallbacks()
	}
}

// runCallbacks runs queued callbacks until the queue is empty.
func (g *group) runCallbacks() {
	for {
		g.mu.Lock()
		batch := g.queue
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.queue = g.spare[:0]
		g.mu.Unlock()
		for i := range batch {
			g.call(&batch[i])
			batch[i] = change{}
		}
		g.mu.Lock()
		g.spare = batch[:0]
		g.mu.Unlock()
	}
}

func (g *group) call(c *change) {
	if g.hook != nil {
		g.safely(c, func() { g.hook(c.t, c.from, c.to, c.resp) })
	}
	for _, f := range c.cbs {
		g.safely(c, func() { f(c.from, c.to, c.resp) })
	}
}

// safely runs f and recovers a panic, so one bad callback breaks neither the
// tracker nor the callbacks queued after it.
func (g *group) safely(c *change, f func()) {
	defer func() {
		if p := recover(); p != nil && g.log != nil {
			g.log.Error("tracking: state-change callback panicked",
				"id", c.t.id, "from", c.from.String(), "to", c.to.String(), "panic", p)
		}
	}()
	f()
}
