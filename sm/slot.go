package sm

import (
	"context"
	"log/slog"
)

// turnstile hands out places, one per caller, in the order the callers
// came: Pace's places in the window and Reserve's in the queue. What
// bounds the places (and so how many a moment's room admits) is its
// user's business (paceLocked, reserveLocked). Guarded by st.mu.
type turnstile struct {
	// admitted counts the places handed out and not given back (Slots
	// out): callers that may be about to write a stanza the queue does
	// not hold yet.
	admitted int
	// waiting holds the callers that wait for a place, first come first
	// served from head on, with those that left (skipped when their turn
	// comes); live counts the others. The served prefix is reclaimed as
	// the list grows, and the whole list once nobody waits.
	waiting []*waiter
	head    int
	live    int
}

// waiter is a caller waiting at a turnstile.
type waiter struct {
	ch   chan struct{} // closed when the caller is handed its places
	left bool          // the caller left without one
	// more is how many places the caller asks for beyond the first
	// (ReserveAnswers), and once handed, how many it got: one and up to
	// that many more, as the room allows.
	more int
}

// push adds w at the end of the list, first reclaiming the entries that
// are no longer waiting (the served prefix and those that left) when they
// are at least half the list, so each entry is copied at most once on
// average.
func (p *turnstile) push(w *waiter) {
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

// hand admits waiting callers, in order, while there is room: each takes
// one place and up to w.more more.
func (p *turnstile) hand(room int) {
	for p.live > 0 && room > 0 {
		w := p.waiting[p.head]
		p.waiting[p.head] = nil
		p.head++
		if w.left {
			continue
		}
		w.more = min(w.more, room-1)
		close(w.ch)
		p.live--
		p.admitted += 1 + w.more
		room -= 1 + w.more
	}
	p.resetIfIdle()
}

// leave ends the wait of w, whose caller gives up (its ctx ended, or its
// connection): it reports whether w was handed its places meanwhile (one
// and w.more), which its caller then keeps or gives back (admitted, and
// room to hand).
func (p *turnstile) leave(w *waiter) (handed bool) {
	select {
	case <-w.ch: // handed a place (under st.mu, which the caller holds)
		return true
	default:
	}
	w.left = true
	p.live--
	p.resetIfIdle()
	return false
}

// resetIfIdle empties the list once nobody waits.
func (p *turnstile) resetIfIdle() {
	if p.live == 0 {
		clear(p.waiting)
		p.waiting, p.head = p.waiting[:0], 0
	}
}

// A Slot is a place that Pace (in the window) or Reserve (in the queue)
// gave its caller. Release it once the stanza it was for is written (the
// queue then holds the stanza), when the write failed, or when the caller
// decides not to write: until then the place counts as taken.
//
// Release a slot once, through the variable Pace or Reserve returned it
// in. A Slot must not be copied (go vet's copylocks check reports copies);
// a copy shares the place, and releasing it after the original (or the
// original after it) is a misuse that is caught and ignored (logged at
// error level): a place is given back once, whatever the number of
// copies released. The log names the second release, which may be the
// original's; Held reports only whether the Slot was released through
// that variable. The zero Slot,
// which Pace returns when the window does not apply, holds nothing.
type Slot struct {
	_   noCopy
	p   *slotPlace
	gen uint64 // p.gen when handed out
}

// slotPlace is what a Slot and its copies share. Its generation moves on
// when the slot is released, so a copy released after the original is
// told apart however often the place was handed out again since: the
// State reuses places given back (st.places), so that a sender that finds
// room allocates nothing.
type slotPlace struct {
	st  *State
	t   *turnstile // guarded by st.mu
	gen uint64     // guarded by st.mu
	n   int        // the places held: 1, or more from ReserveAnswers
}

// maxFreePlaces bounds the places kept for reuse.
const maxFreePlaces = 256

// noCopy makes go vet's copylocks check report copies of a Slot.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// slotLocked returns a Slot on a place of t that the caller was admitted
// to, reusing a place given back. The caller holds st.mu.
func (st *State) slotLocked(t *turnstile) Slot { return st.slotsLocked(t, 1) }

// slotsLocked is slotLocked for n places, released together.
func (st *State) slotsLocked(t *turnstile, n int) Slot {
	var p *slotPlace
	if n := len(st.places); n > 0 {
		p = st.places[n-1]
		st.places[n-1] = nil
		st.places = st.places[:n-1]
	} else {
		p = &slotPlace{st: st}
	}
	p.t, p.n = t, n
	return Slot{p: p, gen: p.gen}
}

// newSlot is slotLocked for a caller that does not hold st.mu (a waiter,
// which allocated anyway).
func newSlot(st *State, t *turnstile) Slot { return newSlots(st, t, 1) }

// newSlots is newSlot for n places.
func newSlots(st *State, t *turnstile, n int) Slot {
	return Slot{p: &slotPlace{st: st, t: t, n: n}}
}

// Held reports whether s holds a place (it was handed one and was not
// released through s).
func (s *Slot) Held() bool { return s.p != nil }

// Places reports how many places s holds: 1, or up to the number asked
// for from ReserveAnswers; 0 once released through s, and for the zero
// Slot.
func (s *Slot) Places() int {
	if s.p == nil {
		return 0
	}
	return s.p.n
}

// Release gives the place back (every place, for a Slot of
// ReserveAnswers). Calling it again through the same
// variable, or on the zero Slot, does nothing; through a copy, it is
// logged and ignored.
func (s *Slot) Release() {
	p := s.p
	if p == nil {
		return
	}
	s.p = nil
	st := p.st
	st.mu.Lock()
	twice := p.gen != s.gen
	if !twice {
		p.gen++
		p.t.admitted -= p.n
		if len(st.places) < maxFreePlaces {
			st.places = append(st.places, p)
		}
		st.spaceLocked()
	}
	st.mu.Unlock()
	if twice {
		st.logAt(slog.LevelError, "sm: a Slot released twice (a copy released too?); the second release is ignored")
	}
}

// Reserve waits until the queue of unacknowledged stanzas has room for
// one more (Config.MaxUnacked) or ctx ends, and returns the Slot it gave
// the caller, which the caller must release: a Slot dropped unreleased
// keeps its place for good, and MaxUnacked of them block Reserve forever.
// Call it before each Session.Send of an application stanza, and release
// the Slot after the write, so that a sender that outruns the server, or
// keeps sending while disconnected, blocks instead of growing the queue
// without limit.
//
// The queue's room holds for any number of concurrent callers: Reserve
// admits a caller only while the stanzas waiting for an ack or a re-send,
// plus the places Reserve and ReserveAnswers handed out and that were not
// released, are fewer than MaxUnacked; callers that wait are admitted one
// at a time, in the order they came, as acks and released slots make
// room, ahead of the callers waiting in ReserveAnswers (whose room does
// not count Reserve's places, so going first takes nothing from them). A
// caller that never releases its slot shrinks the room for good. Reserve
// returns at once when there is room, including when stream management
// is off. When ctx ends first, it returns ctx's error and no slot.
func (st *State) Reserve(ctx context.Context) (Slot, error) {
	return st.reserveN(ctx, &st.reserve, 1)
}

// ReserveAnswers is Reserve for a writer of answers to the peer (receipts
// and markers) that has n of them to write. An answer is the peer's proof:
// it waits for acks when the queue is full, but not for the places that
// Reserve's callers hold and have not written yet (a sender may hold its
// place through a slow store's write). So ReserveAnswers admits a caller
// while the stanzas waiting for an ack or a re-send, plus the places
// ReserveAnswers handed out and that were not released, are fewer than
// MaxUnacked, and the queue may exceed MaxUnacked by at most the places
// Reserve's callers hold. It takes as many places as there is room for,
// up to n. When room comes back, the callers waiting in Reserve are
// served first: while no Reserve caller holds a place, each ack gives room
// to both, so a flood of answers cannot keep the senders waiting, nor the
// senders the answers. While one holds a place (a Send in the store's
// write-ahead), acks of one stanza each go to the answers until that Send
// has written: a wait, not a stall. The places come
// in one Slot that gives them all back when released; Slot.Places tells
// how many it holds: write at most that many stanzas before releasing it.
func (st *State) ReserveAnswers(ctx context.Context, n int) (Slot, error) {
	return st.reserveN(ctx, &st.answers, max(n, 1))
}

// reserveN is Reserve for up to n places (n >= 1) from t, st.reserve or
// st.answers.
func (st *State) reserveN(ctx context.Context, t *turnstile, n int) (Slot, error) {
	st.mu.Lock()
	room := st.reserveRoomLocked()
	if t == &st.answers {
		room = st.answersRoomLocked()
	}
	if t.live == 0 && room > 0 {
		k := min(n, room)
		t.admitted += k
		defer st.mu.Unlock()
		return st.slotsLocked(t, k), nil
	}
	w := &waiter{ch: make(chan struct{}), more: n - 1}
	t.push(w)
	if st.conn != nil {
		// As in Pace: room comes with an ack, which needs what Nagle's
		// algorithm holds (see coalesceLocked).
		st.conn.flushLocked()
	}
	st.mu.Unlock()
	select {
	case <-w.ch:
		return newSlots(st, t, 1+w.more), nil
	case <-ctx.Done():
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.leaveReserveLocked(t, w)
	return Slot{}, ctx.Err()
}

// leaveReserveLocked ends the wait of a Reserve or ReserveAnswers caller
// (of t) whose ctx ended: places handed to it meanwhile go to the next
// waiter.
func (st *State) leaveReserveLocked(t *turnstile, w *waiter) {
	if t.leave(w) {
		t.admitted -= 1 + w.more
	}
	st.reserveLocked()
}

// answersRoomLocked is how many more places ReserveAnswers may hand out:
// the places Reserve's callers hold do not count.
func (st *State) answersRoomLocked() int {
	return st.cfg.MaxUnacked - st.pendingLocked() - st.answers.admitted
}

// reserveRoomLocked is how many more places Reserve may hand out: every
// place counts.
func (st *State) reserveRoomLocked() int {
	return st.answersRoomLocked() - st.reserve.admitted
}

// reserveLocked hands places in the queue to the callers waiting in
// Reserve first, then to those waiting in ReserveAnswers, in order, while
// there is room. The order matters to the senders only: their places do
// not count in the answers' room, while the answers' places count in
// theirs.
func (st *State) reserveLocked() {
	if r := &st.reserve; r.live > 0 {
		r.hand(st.reserveRoomLocked())
	}
	if a := &st.answers; a.live > 0 {
		a.hand(st.answersRoomLocked())
	}
}
