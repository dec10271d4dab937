package sm

import (
	"context"
	"slices"
)

// DefaultWindow is the default Config.Window. Measured against Prosody
// 0.12 on loopback (the README's benchmark section): a sender that writes
// thousands of messages ahead of the server's acks fills the server's
// input, the server's answers to our <r/> and our answers to its <r/> wait
// behind that backlog, and the stanzas the server keeps for us until our
// <a/> pile up; the server then spends twice the CPU per message (2.3 s
// instead of 0.9 s for 5,000 messages with their receipts and markers).
// With 256 stanzas in flight the server's CPU per run stays about 1.2× a
// plain session's there, and ejabberd's throughput is not held back (64
// was as good for Prosody but slowed ejabberd, which acknowledges later).
// The window allows 256 messages per round trip (2,560 per second at
// 100 ms); raise it on links with a longer round trip.
const DefaultWindow = 256

// window returns the window of c: Config.Window or its default; -1 means
// no window.
func (c Config) window() int {
	switch {
	case c.Window == 0:
		return DefaultWindow
	case c.Window < 0:
		return -1
	}
	return min(c.Window, maxMaxUnacked)
}

// pacing is the state of Pace, guarded by st.mu: the slots it handed out
// and the callers waiting for one.
type pacing struct {
	// admitted counts the slots handed out and not released: callers that
	// may be about to write a stanza the queue does not hold yet.
	admitted int
	// waiting holds the channels of the callers that wait for a slot, first
	// come first served from head on; a channel is closed when its caller
	// is handed a slot. The array is reused once every waiter is served.
	waiting []chan struct{}
	head    int
}

// A Slot is a place in the window that Pace gave its caller. Release it
// once the stanza it was for is written (the queue then holds the stanza),
// when the write failed, or when the caller decides not to write: until
// then the window counts it as in flight. The zero Slot, which Pace
// returns when the window does not apply, holds nothing.
type Slot struct{ st *State }

// Release gives the slot back to the window. Calling it again through the
// same variable, or on the zero Slot, does nothing.
func (s *Slot) Release() {
	st := s.st
	if st == nil {
		return
	}
	s.st = nil
	st.mu.Lock()
	st.pace.admitted--
	st.paceLocked()
	st.mu.Unlock()
}

// Pace waits until the window of the current connection has room for one
// more stanza, or until ctx ends, and returns the Slot it gave the caller.
// Call it before writing an application stanza, after Reserve, and
// release the Slot after the write (typically with defer): Reserve bounds
// what is kept for re-sending, Pace bounds what is in flight, so that a
// burst does not run ahead of the server (see DefaultWindow).
//
// The window holds for any number of concurrent callers: Pace admits a
// caller only while the stanzas written and not acknowledged, plus the
// slots handed out and not released, are fewer than Config.Window.
// Callers that wait are admitted one at a time in the order they came, as
// acks and released slots make room. A stanza written and not yet
// released is counted twice for that moment, which errs on the side of
// the server's input. A caller that never releases its slot shrinks the
// window for good.
//
// Pace returns at once, with the zero Slot, when stream management is not
// enabled on the connection (yet), when the connection ended (re-sending
// after a reconnection is Reserve's business), and when the window is
// disabled; a caller waiting when the connection ends returns then, also
// with the zero Slot. When ctx ends first, Pace returns its error and no
// slot: one handed to the caller at that moment goes to the next waiter.
func (st *State) Pace(ctx context.Context) (Slot, error) {
	w := st.cfg.window()
	if w < 0 {
		return Slot{}, nil
	}
	st.mu.Lock()
	c := st.conn
	if c == nil || !c.smOn || c.ended {
		st.mu.Unlock()
		return Slot{}, nil
	}
	p := &st.pace
	if p.head == len(p.waiting) && st.queue.len()+p.admitted < w {
		p.admitted++
		st.mu.Unlock()
		return Slot{st}, nil
	}
	ch := make(chan struct{})
	p.waiting = append(p.waiting, ch)
	st.mu.Unlock()
	var err error
	select {
	case <-ch:
		return Slot{st}, nil
	case <-c.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.leavePaceLocked(ch, err)
}

// leavePaceLocked ends the wait on ch of a Pace caller that the end of its
// connection (err nil) or of its ctx (err) woke. A slot handed to it
// meanwhile is kept in the first case, and goes to the next waiter in the
// second.
func (st *State) leavePaceLocked(ch chan struct{}, err error) (Slot, error) {
	p := &st.pace
	if i := slices.Index(p.waiting[p.head:], ch); i >= 0 {
		p.waiting = slices.Delete(p.waiting, p.head+i, p.head+i+1)
		if p.head == len(p.waiting) {
			p.waiting, p.head = p.waiting[:0], 0
		}
		return Slot{}, err
	}
	if err == nil {
		return Slot{st}, nil // the caller writes on the next connection
	}
	p.admitted--
	st.paceLocked()
	return Slot{}, err
}

// paceLocked hands slots to the callers waiting in Pace, in order, while
// the window has room; spaceLocked calls it whenever stanzas leave the
// queue, and Slot.Release when a slot comes back.
func (st *State) paceLocked() {
	p := &st.pace
	if p.head == len(p.waiting) {
		return
	}
	w := st.cfg.window()
	for p.head < len(p.waiting) && st.queue.len()+p.admitted < w {
		close(p.waiting[p.head])
		p.waiting[p.head] = nil
		p.head++
		p.admitted++
	}
	if p.head == len(p.waiting) {
		p.waiting, p.head = p.waiting[:0], 0
	}
}
