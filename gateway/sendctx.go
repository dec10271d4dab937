package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// sendDeadline is a context that the sends starting close together share
// (see Gateway.sendCtx).
type sendDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
	at     time.Time // when it was made
	end    time.Time // its deadline
}

// sendCtxs holds the shared send contexts.
type sendCtxs struct {
	cur atomic.Pointer[sendDeadline]

	mu   sync.Mutex
	made []*sendDeadline // oldest first, until past their deadline
}

// sendCtx returns the context of a send: it ends when the gateway closes,
// or after a wait of at least Config.SendTimeout and at most 1/30 more.
// The sends that start within that 1/30 of each other share it: a context
// with a timer of its own per send, which the client's write then watches,
// costs a busy gateway more than a microsecond of CPU per message, as all
// sends contend for the runtime's timers.
func (g *Gateway) sendCtx() context.Context {
	slack := g.cfg.SendTimeout / 30
	now := time.Now() // a deadline is in real time, whatever g.now says
	if d := g.sends.cur.Load(); d != nil && now.Sub(d.at) <= slack {
		return d.ctx
	}
	s := &g.sends
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.cur.Load(); d != nil && now.Sub(d.at) <= slack {
		return d.ctx // made by a concurrent call
	}
	// Release the contexts whose deadline passed (the others may still
	// be in use).
	n := 0
	for _, d := range s.made {
		if now.After(d.end) {
			d.cancel()
			n++
		}
	}
	s.made = append(s.made[:0], s.made[n:]...)
	d := &sendDeadline{at: now, end: now.Add(g.cfg.SendTimeout + slack)}
	d.ctx, d.cancel = context.WithDeadline(g.ctx, d.end)
	s.made = append(s.made, d)
	s.cur.Store(d)
	return d.ctx
}
