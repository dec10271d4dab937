package sm

import (
	"context"
	"fmt"
	"log/slog"
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
	// waiting holds the callers that wait for a slot, first come first
	// served from head on, with those that left (skipped when their turn
	// comes); live counts the others. The served prefix is reclaimed as
	// the list grows, and the whole list once nobody waits.
	waiting []*paceWaiter
	head    int
	live    int
}

// paceWaiter is a caller waiting in Pace.
type paceWaiter struct {
	ch   chan struct{} // closed when the caller is handed a slot
	left bool          // the caller left without one
}

// push adds w at the end of the list, first reclaiming the entries that
// are no longer waiting (the served prefix and those that left) when they
// are at least half the list, so each entry is copied at most once on
// average.
func (p *pacing) push(w *paceWaiter) {
	if n := len(p.waiting); n > 0 && n-p.live >= n/2 {
		k := 0
		for _, pw := range p.waiting[p.head:] {
			if !pw.left {
				p.waiting[k] = pw
				k++
			}
		}
		clear(p.waiting[k:])
		p.waiting, p.head = p.waiting[:k], 0
	}
	p.waiting = append(p.waiting, w)
	p.live++
}

// resetIfIdle empties the list once nobody waits.
func (p *pacing) resetIfIdle() {
	if p.live == 0 {
		clear(p.waiting)
		p.waiting, p.head = p.waiting[:0], 0
	}
}

// A Slot is a place in the window that Pace gave its caller. Release it
// once the stanza it was for is written (the queue then holds the stanza),
// when the write failed, or when the caller decides not to write: until
// then the window counts it as in flight. Release it once: keep it in one
// variable and release through that (Release clears it). Releasing a copy
// as well widens the window by one while other slots are out; it is only
// noticed (logged at error level) when the count would go below zero. The
// zero Slot, which Pace returns when the window does not apply, holds
// nothing.
type Slot struct{ st *State }

// Held reports whether s holds a place in the window.
func (s Slot) Held() bool { return s.st != nil }

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
	under := st.pace.admitted < 0
	if under {
		st.pace.admitted = 0
	}
	st.paceLocked()
	st.mu.Unlock()
	if under {
		st.logAt(slog.LevelError, "sm: more Slots released than handed out (a copy released too?): the window was wider by one until now, and this caller may not be the one at fault")
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
	w := st.cfg.window()
	if w < 0 {
		return Slot{}, nil
	}
	st.mu.Lock()
	c := st.conn
	switch {
	case c == nil || !c.smOn:
		st.mu.Unlock()
		return Slot{}, nil
	case c.ended:
		st.mu.Unlock()
		return Slot{}, errPaceConnEnded
	}
	p := &st.pace
	if p.live == 0 && st.queue.len()+p.admitted < w {
		p.admitted++
		st.mu.Unlock()
		return Slot{st}, nil
	}
	pw := &paceWaiter{ch: make(chan struct{})}
	p.push(pw)
	st.mu.Unlock()
	var err error
	select {
	case <-pw.ch:
		return Slot{st}, nil
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
func (st *State) leavePaceLocked(pw *paceWaiter, err error) (Slot, error) {
	p := &st.pace
	select {
	case <-pw.ch: // handed a slot (under st.mu, which the caller holds)
		if err == errPaceConnEnded {
			return Slot{st}, nil // written on the next connection
		}
		p.admitted--
	default:
		pw.left = true
		p.live--
		p.resetIfIdle()
	}
	st.paceLocked() // whatever changed, room goes to whoever waits
	return Slot{}, err
}

// paceLocked hands slots to the callers waiting in Pace, in order, while
// the window has room; spaceLocked calls it whenever stanzas leave the
// queue, Slot.Release when a slot comes back, and a caller that leaves.
func (st *State) paceLocked() {
	p := &st.pace
	if p.live == 0 {
		return
	}
	w := st.cfg.window()
	for p.live > 0 && st.queue.len()+p.admitted < w {
		pw := p.waiting[p.head]
		p.waiting[p.head] = nil
		p.head++
		if pw.left {
			continue
		}
		close(pw.ch)
		p.live--
		p.admitted++
	}
	p.resetIfIdle()
}
