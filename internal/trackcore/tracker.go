package trackcore

import (
	"context"
	"sync/atomic"
)

// Bits of Tracker.word below the state.
const (
	stateMask   = 0x0f
	settledBit  = 1 << 4  // tracking has ended; nothing changes any more
	byTimeout   = 1 << 5  // tracking ended by the window (with settledBit)
	byClose     = 1 << 6  // tracking ended by Close (with settledBit)
	inRegistry  = 1 << 7  // pending in a Registry (Registry.byNum, and the foreign index)
	hasDeadline = 1 << 8  // has a window: in the registry's FIFO of windows, or in its heap with ownWindow
	ownWindow   = 1 << 9  // with hasDeadline: a window other than the registry's, in its heap
	foreignID   = 1 << 10 // the id is one the registry did not make: kept in extra.names

	// idShift is where the length of a foreign id starts in the word: the
	// id is names[:length], the thread names[length:].
	idShift = 11
	// maxIDLen is the longest id a registry takes from its caller (the
	// client takes ids of at most stanza.MaxIDLen, 4,000 bytes).
	maxIDLen = 1<<(32-idShift) - 1
)

// Tracker follows one outgoing message; R is the evidence type
// (tracking.Response). It is safe for concurrent use. tracking.MessageTracker
// is defined as Tracker[tracking.Response] and exposes only the reading
// methods; the driving ones (Advance, and the Registry's evidence methods)
// are reachable only inside this module.
//
// A pending tracker takes 24 bytes: no id (see ownIDs; an id the registry did
// not make is kept in extra), no deadline (see timers.marks), no index in a
// heap, and one pointer for its conversation and its extra. That pointer is
// the tracker's own extra once it has one, else its conversation's shared
// extra, which holds nothing but the conversation: every extra names its
// conversation, so the lock is found through either. It is atomic because
// ext replaces the shared extra under the lock while ID, To and the lock's
// callers read it without; both lead to the same conversation, and an
// extra with a foreign id is set before the tracker is shared, so ID needs
// no lock. The other layouts considered: the state with a 53-bit number in
// one 64-bit word, leaving no room for seq, which cannot be derived from
// the number (Written gives every message a new position in wire order,
// which differs from registration order with concurrent senders, after a
// reconnection, or with a message received between registration and
// write); and the extras in a side table, which would need the lock to
// read a foreign id and a map entry for every message that gets a receipt.
type Tracker[R any] struct {
	x    atomic.Pointer[extra[R]] // own extra, or the conversation's shared one: never nil
	num  uint64                   // registration number in the registry: its own id, its place in byNum
	word atomic.Uint32            // state and flag bits; written under the lock, read without it
	seq  uint32                   // position in the conversation, for "displayed up to here"
}

// Callback is a per-tracker state-change callback.
type Callback[R any] func(from, to State, resp *R)

// extra holds what only some trackers need, so a pending tracker stays small
// (56 bytes, in the size class of 64). A conversation's shared extra
// (conversation.shared) stands for the trackers without one: every field
// but c stays zero, and only ext, which replaces it, writes an extra.
type extra[R any] struct {
	c       *conversation[R] // the conversation, and through it the lock
	resp    *R
	changed chan struct{} // closed on the next change, then replaced; nil without waiters
	done    chan struct{} // closed when tracking ends; nil until asked for
	cbs     *callbacks[R] // guarded by the lock; a list is never changed once made
	// names is the foreign id, if any, then the thread, if any (see
	// idShift): set before the tracker is shared and never changed, so ID
	// reads it without the lock.
	names string
}

// NewStandalone returns a tracker in InTransit that belongs to no registry:
// driven only by Advance, with no window. Its id is kept up to maxIDLen
// bytes (2 MiB less one): ID returns a longer one cut to that length.
func NewStandalone[R any](id string) *Tracker[R] {
	c := newConversation(&group[R]{}, "")
	t := &Tracker[R]{}
	t.x.Store(&extra[R]{c: c, names: id})
	t.word.Store(foreignID | uint32(min(len(id), maxIDLen))<<idShift)
	return t
}

// Standalone reports whether t belongs to no registry (NewStandalone).
func (t *Tracker[R]) Standalone() bool { return t.conv().g.reg == nil }

// conv returns the tracker's conversation.
func (t *Tracker[R]) conv() *conversation[R] { return t.x.Load().c }

// ID returns the message's id. An id the registry made (Track with an empty
// id) is formatted anew on each call.
func (t *Tracker[R]) ID() string {
	if w := t.word.Load(); w&foreignID != 0 {
		return t.foreignID(w)
	}
	return t.conv().g.reg.ids.format(t.num)
}

// foreignID returns the id of a tracker with foreignID set in its word w.
func (t *Tracker[R]) foreignID(w uint32) string { return t.x.Load().names[:w>>idShift] }

// thread returns the message's thread, if any.
func (t *Tracker[R]) thread() string {
	return t.x.Load().names[t.word.Load()>>idShift:]
}

// To returns the conversation key; empty for standalone trackers.
func (t *Tracker[R]) To() string { return t.conv().jid }

// State returns the current state.
func (t *Tracker[R]) State() State {
	return State(t.word.Load() & stateMask)
}

// Response returns the evidence for the last state change, or nil.
func (t *Tracker[R]) Response() *R {
	g := t.conv().g
	g.mu.Lock()
	defer g.mu.Unlock()
	return t.x.Load().resp
}

// OnStateChange registers f for each later state change of t.
func (t *Tracker[R]) OnStateChange(f Callback[R]) {
	if f == nil {
		return
	}
	g := t.conv().g
	g.mu.Lock()
	x := t.ext()
	// A new head: queued changes keep the list they were queued with.
	x.cbs = &callbacks[R]{f: f, prev: x.cbs}
	g.mu.Unlock()
}

// Done returns a channel that is closed when tracking ends.
func (t *Tracker[R]) Done() <-chan struct{} {
	g := t.conv().g
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

// Settled reports whether tracking has ended.
func (t *Tracker[R]) Settled() bool { return t.word.Load()&settledBit != 0 }

// Close stops tracking: Closed, or DeliveredToRecipient and Error kept.
func (t *Tracker[R]) Close() {
	g := t.conv().g
	g.mu.Lock()
	t.transition(Closed, nil)
	g.unlock()
}

// Advance applies evidence that the message reached state to. It returns
// the state before and whether the graph allowed the request (a same-state
// request, or one that ends tracking without a change, is allowed).
func (t *Tracker[R]) Advance(to State, resp *R) (State, bool) {
	if to >= NumStates {
		return t.State(), false
	}
	g := t.conv().g
	g.mu.Lock()
	from := t.State()
	ok := t.transition(to, resp)
	g.unlock()
	return from, ok
}

// Stop says why a tracker can make no more progress.
type Stop uint8

const (
	Going   Stop = iota // progress is still possible
	Stopped             // tracking ended short of the target (by Close, or settled otherwise)
	Expired             // tracking ended short of the target by the window
	Failed              // in Error: an error reply arrived
)

// Wait blocks until the state is at or past target (a progress state) and
// returns (state, Going, nil, nil), or returns as soon as target cannot be
// reached now: the state, why, and in the Error state the error reply's
// evidence. When ctx ends first it returns the state, Going, nil and ctx.Err().
func (t *Tracker[R]) Wait(ctx context.Context, target State) (State, Stop, *R, error) {
	want, _ := target.Progress()
	g := t.conv().g
	for {
		g.mu.Lock()
		w := t.word.Load()
		st := State(w & stateMask)
		if have, ok := st.Progress(); ok && have >= want {
			g.mu.Unlock()
			return st, Going, nil, nil
		}
		if stop := blocked(w); stop != Going {
			var resp *R
			if stop == Failed {
				resp = t.x.Load().resp
			}
			g.mu.Unlock()
			return st, stop, resp, nil
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
			return t.State(), Going, nil, ctx.Err()
		}
	}
}

// blocked returns why a tracker with word w can make no more progress now.
func blocked(w uint32) Stop {
	switch State(w & stateMask) {
	case Aborted, Closed:
		return Stopped
	case TimedOut:
		return Expired
	case Error:
		return Failed
	}
	switch {
	case w&byTimeout != 0:
		return Expired
	case w&settledBit != 0:
		return Stopped
	}
	return Going
}

// ext returns the tracker's own extra data, allocating it in place of the
// conversation's shared one. The caller holds the lock.
func (t *Tracker[R]) ext() *extra[R] {
	if x := t.own(); x != nil {
		return x
	}
	x := &extra[R]{c: t.conv()}
	t.x.Store(x)
	return x
}

// own returns the tracker's own extra data, or nil while it shares its
// conversation's: what writes an extra gets it here or from ext, never
// the shared one, which every tracker of the conversation reads.
func (t *Tracker[R]) own() *extra[R] {
	if x := t.x.Load(); x != &x.c.shared {
		return x
	}
	return nil
}

// transition applies a request for state to. It reports whether the request
// was allowed (a same-state request is allowed and changes nothing). The
// caller holds the lock and calls g.unlock afterwards.
func (t *Tracker[R]) transition(to State, resp *R) bool {
	w := t.word.Load()
	from := State(w & stateMask)
	next := table[from][to]
	if next == refused {
		return false
	}
	if w&settledBit != 0 {
		return State(next) == from // a same-state request stays a no-op
	}
	dst := State(next)
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
	x := t.own() // nil while t shares its conversation's extra, which stays zero
	c := t.conv()
	g := c.g
	if dst != from && g.made != nil {
		g.made(t, from, dst, resp) // before the state shows: see Config.OnMade
	}
	t.word.Store(nw)
	if dst == DeliveredToRecipient && w&inRegistry != 0 && c.covered(t) {
		c.mk.addLate(t)
	}
	if dst != from {
		if resp != nil && x == nil {
			x = t.ext()
		}
		var cbs *callbacks[R]
		if x != nil {
			x.resp, cbs = resp, x.cbs
		}
		if cbs != nil || g.hook != nil {
			g.queue.push(change[R]{t: t, from: from, to: dst, resp: resp, cbs: cbs}, &g.free)
			g.held++
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

// callbacks is a tracker's list of callbacks, newest first.
type callbacks[R any] struct {
	f    Callback[R]
	prev *callbacks[R]
}

// run calls the callbacks of the list in the order they were added: the
// list is read into a buffer (on the stack for up to 8 callbacks, the
// usual 1 or 2 included), then called from its end.
func (l *callbacks[R]) run(from, to State, resp *R) {
	var buf [8]Callback[R]
	fs := buf[:0]
	for ; l != nil; l = l.prev {
		fs = append(fs, l.f)
	}
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i](from, to, resp)
	}
}
