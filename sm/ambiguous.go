package sm

import (
	"cmp"
	"context"
	"log/slog"
	"slices"

	"mellium.im/xmpp"
)

// holdLocked moves the stanzas of st.retransmit that ambiguous selects to
// st.held, in the order of first writes, after any held before: they are
// not retransmitted, so they take no number on the stream until
// ResolveAmbiguous writes them. Each is marked as in doubt, so that a
// later resumption holds it back again whatever its h.
func (st *State) holdLocked(ambiguous func(entry) bool) {
	keep := st.retransmit[:0]
	for _, e := range st.retransmit {
		if ambiguous(e) {
			e.doubt = true
			st.held = append(st.held, e)
			continue
		}
		keep = append(keep, e)
	}
	clear(st.retransmit[len(keep):])
	st.retransmit = keep
	slices.SortStableFunc(st.held, func(a, b entry) int { return cmp.Compare(a.ord, b.ord) })
}

// announceHeld hands the held stanzas to Config.OnAmbiguous, on the
// calling goroutine (Start's, after a resumption).
func (st *State) announceHeld() {
	f := st.cfg.OnAmbiguous
	if f == nil {
		return
	}
	st.mu.Lock()
	ss := make([]Stanza, 0, len(st.held))
	for i := range st.held {
		ss = append(ss, st.held[i].stanza())
	}
	st.mu.Unlock()
	if len(ss) == 0 {
		return
	}
	st.logAt(slog.LevelInfo, "sm: holding back restored stanzas that may have reached the server, for the caller to settle",
		"count", len(ss))
	f(ss)
}

// ResolveAmbiguous settles the stanzas a resumption held back as ambiguous
// (see Config.OnAmbiguous): each one for which received reports true (the
// caller's proof that the server got it, such as the account's own message
// archive) is acknowledged (OnAcked); every other one is written again on
// s, in the order of first writes, as a retransmission with its id,
// counted on the stream from this write. settled and resent count them.
// received runs on the calling goroutine without the State's lock, once
// per held stanza; nil means none was received.
//
// Call it once the connection of s is up (Start returned after a
// resumption), from a goroutine other than the one that reads the stream,
// one call at a time, with a ctx that lives as long as the connection (as
// Start's: mellium gets it for the writes). If the connection ended or is
// not the State's current one, it returns ErrConnEnded after the
// acknowledgements; if a write fails, that error. What was not written
// stays held: the next resumption announces it again (OnAmbiguous), a
// failed one hands it to the Policy.
func (st *State) ResolveAmbiguous(ctx context.Context, s *xmpp.Session, received func(Stanza) bool) (settled, resent int, err error) {
	st.mu.Lock()
	snap := slices.Clone(st.held)
	st.mu.Unlock()
	got := map[uint64]bool{}
	if received != nil {
		for i := range snap {
			if received(snap[i].stanza()) {
				got[snap[i].ord] = true
			}
		}
	}
	st.mu.Lock()
	keep := st.held[:0]
	for _, e := range st.held {
		if got[e.ord] {
			st.pushLocked(evAcked, e)
			settled++
			continue
		}
		keep = append(keep, e)
	}
	clear(st.held[len(keep):])
	st.held = keep
	st.spaceLocked()
	st.mu.Unlock()
	st.deliver()
	for {
		st.mu.Lock()
		if len(st.held) == 0 {
			st.held = nil
			st.mu.Unlock()
			return settled, resent, nil
		}
		c := st.conn
		if c == nil || c.sess != s || !c.smOn || c.ended {
			st.mu.Unlock()
			return settled, resent, ErrConnEnded
		}
		e := st.held[0]
		st.mu.Unlock()
		if st.dropDamaged(&st.held, e) {
			continue
		}
		st.mu.Lock()
		if st.conn != c || c.sess != s || !c.smOn || c.ended {
			st.mu.Unlock()
			return settled, resent, ErrConnEnded
		}
		if len(st.held) == 0 || st.held[0].ord != e.ord {
			st.mu.Unlock()
			continue
		}
		c.copyHeld = true // writeCopy resets it
		st.mu.Unlock()
		written, err := st.writeCopy(ctx, s, c, e, rawReader(e.raw))
		st.mu.Lock()
		// The scanner dropped e from st.held when it queued the copy,
		// unless another connection took over meanwhile.
		if written && len(st.held) > 0 && st.held[0].ord == e.ord { // unless Abandon emptied it meanwhile
			st.held[0] = entry{}
			st.held = st.held[1:]
		}
		if written {
			resent++
		}
		st.spaceLocked()
		st.mu.Unlock()
		if err != nil {
			return settled, resent, err
		}
	}
}
