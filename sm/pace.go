package sm

import (
	"context"
	"fmt"
)

// DefaultWindow is the cap of the default window (Config.Window 0), which
// shrinks toward MinWindow while the server queues what we send (see
// "Pacing" in the package documentation). Measured against Prosody 0.12
// on loopback (docs/benchmarks.md, "What a burst costs the server, and
// pacing"): a sender that writes thousands of messages ahead of the
// server's acks fills the server's input, the server's answers to our
// <r/> and our answers to its <r/> wait
// behind that backlog, and the stanzas the server keeps for us until our
// <a/> pile up; the server then spends twice the CPU per message (2.3 s
// instead of 0.9 s for 5,000 messages with their receipts and markers).
// With 256 stanzas in flight the server's CPU per run stays about 1.2× a
// plain session's there, and ejabberd's throughput is not held back (64
// was as good for Prosody but slowed ejabberd, which acknowledges later).
// 256 allow 256 messages per round trip (2,560 per second at 100 ms). The
// default window (Config.Window 0) is at most this, and smaller while the
// server queues what we send; on a link with a longer round trip, or to a
// server slow per stanza behind a long route, set a fixed Config.Window.
const DefaultWindow = 256

// windowLocked returns the window Pace applies now: Config.Window, or the
// default window's current size (see MinWindow); -1 means no window.
func (st *State) windowLocked() int {
	switch w := st.cfg.Window; {
	case w == 0:
		return st.win.size()
	case w < 0:
		return -1
	default:
		return min(w, maxMaxUnacked)
	}
}

// Pace waits until the window of the current connection has room for one
// more stanza, or until ctx ends, and returns the Slot it gave the caller.
// Call it before writing an application stanza, after Reserve, and
// release the Slot after the write: Reserve bounds what is kept for
// re-sending, Pace bounds what is in flight, so that a burst does not run
// ahead of the server (see DefaultWindow).
//
// The window holds for any number of concurrent callers on a connection:
// Pace admits a caller only while the stanzas written and not
// acknowledged, plus the slots handed out and not released, are fewer
// than Config.Window. Callers that wait are admitted one at a time in the
// order they came, as acks and released slots make room. A stanza written
// and not yet released is counted twice for that moment, which errs on
// the side of the server's input. A caller that never releases its slot
// shrinks the window for good.
//
// When the connection ended, or ends while the caller waits, Pace returns
// ErrConnEnded and no slot: write on the next connection, calling Pace
// again there once it is up (re-sending what was written on the lost one
// is the State's business, bounded by Reserve). A slot handed to the
// caller just before stays the caller's, and counts on the next
// connection. Pace returns the zero Slot and nil at once when stream
// management is not enabled on the connection (yet; never, on a server
// without it) and when the window is disabled. When ctx ends first, Pace
// returns its error and no slot: one handed to the caller at that moment
// goes to the next waiter.
func (st *State) Pace(ctx context.Context) (Slot, error) {
	st.mu.Lock()
	w := st.windowLocked()
	c := st.conn
	switch {
	case w < 0 || c == nil || !c.smOn:
		st.mu.Unlock()
		return Slot{}, nil
	case c.ended:
		st.mu.Unlock()
		return Slot{}, errPaceConnEnded
	}
	p := &st.pace
	if p.live == 0 && st.queue.len()+p.admitted < w {
		p.admitted++
		defer st.mu.Unlock()
		return st.slotLocked(p), nil
	}
	pw := &waiter{ch: make(chan struct{})}
	p.push(pw)
	// Nothing more is written until an ack makes room: what Nagle's
	// algorithm holds goes out now (see coalesceLocked).
	c.flushLocked()
	st.mu.Unlock()
	var err error
	select {
	case <-pw.ch:
		return newSlot(st, p), nil
	case <-c.done:
		err = errPaceConnEnded
	case <-ctx.Done():
		err = ctx.Err()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.leavePaceLocked(pw, err)
}

// errPaceConnEnded is Pace's error for an ended connection: ErrConnEnded,
// whose own text is about a connection that ended before stream
// management was enabled.
var errPaceConnEnded = fmt.Errorf("sm: the connection ended while waiting for room in the window: %w", ErrConnEnded)

// leavePaceLocked ends the wait of a Pace caller that the end of its
// connection (errPaceConnEnded) or of its ctx woke. A slot handed to it
// meanwhile is kept in the first case, and goes to the next waiter in the
// second.
func (st *State) leavePaceLocked(pw *waiter, err error) (Slot, error) {
	p := &st.pace
	if p.leave(pw) {
		if err == errPaceConnEnded {
			return st.slotLocked(p), nil // written on the next connection
		}
		p.admitted--
	}
	st.paceLocked() // whatever changed, room goes to whoever waits
	return Slot{}, err
}

// paceLocked hands slots to the callers waiting in Pace, in order, while
// the window has room; spaceLocked calls it whenever stanzas leave the
// queue or a slot comes back, and a caller that leaves does.
func (st *State) paceLocked() {
	p := &st.pace
	if p.live == 0 {
		return
	}
	p.hand(st.windowLocked() - st.queue.len() - p.admitted)
}
