package tracking

import (
	"context"
	"sync/atomic"
)

// Bits of MessageTracker.word below the state.
const (
	stateMask   = 0x0f
	settledBit  = 1 << 4 // tracking has ended; nothing changes any more
	byTimeout   = 1 << 5 // tracking ended by the window (with settledBit)
	byClose     = 1 << 6 // tracking ended by Close (with settledBit)
	inRegistry  = 1 << 7 // held by a Registry's index
	hasDeadline = 1 << 8 // deadline is set and the tracker is in the timer heap
)

// MessageTracker follows one outgoing message. It is safe for concurrent use.
//
// A tracker made by a Registry (or by the client built on it) is driven by
// evidence from the wire; one made by [NewMessageTracker] is driven by its
// owner through [MessageTracker.Advance].
type MessageTracker struct {
	c        *conversation // the conversation, and through it the lock
	id       string
	x        *extra        // rarely needed data, allocated on first use; guarded by the lock
	word     atomic.Uint32 // state and flag bits; written under the lock, read without it
	seq      uint32        // position in the conversation, for "displayed up to here"
	deadline uint32        // end of the window, in ms since the registry epoch (wrapping)
	heapIdx  int32         // index in the registry's timer heap
}

// extra holds what only some trackers need, so a pending tracker stays small.
type extra struct {
	resp    *Response
	changed chan struct{} // closed on the next change, then replaced; nil without waiters
	done    chan struct{} // closed when tracking ends; nil until asked for
	cbs     []func(from, to MessageState, resp *Response)
	thread  string
}

// NewMessageTracker returns a tracker in InTransit that is driven only by
// [MessageTracker.Advance]: the building block for tracking implementations
// other than this module's client. It has no tracking window of its own.
func NewMessageTracker(id string) *MessageTracker {
	g := &group{}
	return &MessageTracker{c: &conversation{g: g}, id: id, heapIdx: -1}
}

// ID returns the message's id: its id attribute and XEP-0359 origin-id.
func (t *MessageTracker) ID() string { return t.id }

// To returns the conversation the message belongs to: the recipient's or the
// room's bare JID. It is empty for trackers made by NewMessageTracker.
func (t *MessageTracker) To() string { return t.c.jid }

// State returns the current state.
func (t *MessageTracker) State() MessageState {
	return MessageState(t.word.Load() & stateMask)
}

// Response returns the evidence for the last state change: the error reply in
// the Error state, the reflected message for a group chat message, the
// receipt or marker sender otherwise. It may be nil.
func (t *MessageTracker) Response() *Response {
	g := t.c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.x == nil {
		return nil
	}
	return t.x.resp
}

// OnStateChange registers f to be called once for each later state change of
// this tracker, with the old and new state and the evidence (which may be
// nil). Callbacks run in transition order on a goroutine of the library, never
// on the one that reported the evidence and never while a lock is held, so f
// may call back into the library. Callbacks of one Registry run one at a time:
// a slow f delays the others. A panic in f is recovered and logged.
func (t *MessageTracker) OnStateChange(f func(from, to MessageState, resp *Response)) {
	if f == nil {
		return
	}
	g := t.c.g
	g.mu.Lock()
	x := t.ext()
	// Copy on write: queued changes keep the slice they were queued with.
	x.cbs = append(x.cbs[:len(x.cbs):len(x.cbs)], f)
	g.mu.Unlock()
}

// Done returns a channel that is closed when tracking ends: the tracker
// reached SeenByRecipient, Aborted, TimedOut or Closed, or its window ended or
// it was closed in another state. After that nothing changes.
func (t *MessageTracker) Done() <-chan struct{} {
	g := t.c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	x := t.ext()
	if x.done == nil {
		x.done = make(chan struct{})
		if t.word.Load()&settledBit != 0 {
			close(x.done)
		}
	}
	return x.done
}

// Settled reports whether tracking has ended (Done is closed).
func (t *MessageTracker) Settled() bool { return t.word.Load()&settledBit != 0 }

// Close stops tracking. A tracker without proof becomes Closed; one in
// DeliveredToRecipient or Error keeps its state. Closing a settled tracker
// does nothing.
func (t *MessageTracker) Close() {
	g := t.c.g
	g.mu.Lock()
	t.transition(Closed, nil)
	g.unlock()
}

// Advance applies evidence that the message reached state to, with resp as
// the evidence (may be nil). It returns nil when the state changed, when the
// tracker already was in that state, and when the request ended tracking
// without a change (a timeout or close in DeliveredToRecipient or Error); it
// returns an error matching ErrRefused when the transition graph does not
// allow the change, and changes nothing then.
func (t *MessageTracker) Advance(to MessageState, resp *Response) error {
	if to >= numStates {
		return &TransitionError{From: t.State(), To: to}
	}
	g := t.c.g
	g.mu.Lock()
	from := t.State()
	ok := t.transition(to, resp)
	g.unlock()
	if !ok {
		return &TransitionError{From: from, To: to}
	}
	return nil
}

// Wait blocks until the state is at or past target in the order InTransit <
// DeliveredToServer < DeliveredToRecipient < SeenByRecipient, and returns
// (state, nil). It returns early with the current state and an error as soon
// as target cannot be reached now: ErrAborted, ErrTimedOut or ErrClosed, an
// error matching ErrFailed (and unwrapping to the reply's error) in the Error
// state, and ErrTimedOut or ErrClosed when tracking ended short of target. When
// ctx ends first it returns ctx.Err() and the tracker is unchanged. Any number
// of goroutines may wait at once.
func (t *MessageTracker) Wait(ctx context.Context, target MessageState) (MessageState, error) {
	want, ok := target.progress()
	if !ok {
		return t.State(), ErrInvalidTarget
	}
	g := t.c.g
	for {
		g.mu.Lock()
		w := t.word.Load()
		st := MessageState(w & stateMask)
		if have, ok := st.progress(); ok && have >= want {
			g.mu.Unlock()
			return st, nil
		}
		if err := t.blocked(w); err != nil {
			g.mu.Unlock()
			return st, err
		}
		x := t.ext()
		if x.changed == nil {
			x.changed = make(chan struct{})
		}
		ch := x.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return t.State(), ctx.Err()
		}
	}
}

// blocked returns why a tracker with word w can make no more progress now, or
// nil. The caller holds the lock.
func (t *MessageTracker) blocked(w uint32) error {
	switch MessageState(w & stateMask) {
	case Aborted:
		return ErrAborted
	case TimedOut:
		return ErrTimedOut
	case Closed:
		return ErrClosed
	case Error:
		var reply error
		if t.x != nil && t.x.resp != nil {
			reply = t.x.resp.Err
		}
		return &failedError{reply: reply}
	}
	switch {
	case w&byTimeout != 0:
		return ErrTimedOut
	case w&byClose != 0:
		return ErrClosed
	case w&settledBit != 0:
		return ErrClosed
	}
	return nil
}

// ext returns the tracker's extra data, allocating it. The caller holds the lock.
func (t *MessageTracker) ext() *extra {
	if t.x == nil {
		t.x = &extra{}
	}
	return t.x
}

// transition applies a request for state to. It reports whether the request
// was allowed (a same-state request is allowed and changes nothing). The
// caller holds the lock and calls g.unlock afterwards.
func (t *MessageTracker) transition(to MessageState, resp *Response) bool {
	w := t.word.Load()
	from := MessageState(w & stateMask)
	next := table[from][to]
	if next == refused {
		return false
	}
	if w&settledBit != 0 {
		return MessageState(next) == from // a same-state request stays a no-op
	}
	dst := MessageState(next)
	ends := endsTracking(to, dst)
	if dst == from && !ends {
		return true
	}
	nw := w&^stateMask | uint32(dst)
	if ends {
		nw |= settledBit
		switch to {
		case TimedOut:
			nw |= byTimeout
		case Closed:
			nw |= byClose
		}
	}
	t.word.Store(nw)
	g := t.c.g
	x := t.x
	if dst != from {
		if resp != nil {
			x = t.ext()
			x.resp = resp
		} else if x != nil {
			x.resp = nil
		}
		if x != nil && len(x.cbs) > 0 || g.hook != nil {
			g.queue = append(g.queue, change{t: t, from: from, to: dst, resp: resp, cbs: cbsOf(x)})
		}
	}
	if x != nil && x.changed != nil {
		close(x.changed)
		x.changed = nil
	}
	if ends {
		if x != nil && x.done != nil {
			close(x.done)
		}
		if w&inRegistry != 0 {
			g.reg.forget(t)
		}
	}
	return true
}

func cbsOf(x *extra) []func(from, to MessageState, resp *Response) {
	if x == nil {
		return nil
	}
	return x.cbs
}

// TransitionError reports a refused request. It matches ErrRefused.
type TransitionError struct {
	From, To MessageState
}

func (e *TransitionError) Error() string {
	return "tracking: transition refused: " + e.From.String() + " -> " + e.To.String()
}

// Is reports whether target is ErrRefused.
func (e *TransitionError) Is(target error) bool { return target == ErrRefused }
