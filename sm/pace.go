package sm

import (
	"context"
	"time"
)

// DefaultWindow is the default Config.Window: the most stanzas Pace lets
// wait for the server's ack on a connection. Within it the window adapts
// to the server: while it is full, it shrinks when stanzas take more than
// 50 ms longer from their write to the server's ack than the quickest on
// the connection, and grows back when acks come sooner. Every stanza in
// flight is work the server queues before it answers, so the window
// settles near the server's rate times 50 ms: all 256 for a server that
// handles 5,000 messages a second (ejabberd, which acknowledges later,
// needs that many on loopback), and a few dozen for Prosody 0.12 archiving
// every message for an offline recipient (300 to 600 a second; 17 to 45
// measured). A delay that shrinking the window does not remove (a long or
// longer route, jitter, a server that answers late) is learnt once the
// window is at its floor, and the window grows back. With 2×AckEvery at
// or above Config.Window there is nothing to adapt.
//
// Why a window at all (measured on loopback, docs/benchmarks.md): a
// sender that writes thousands of messages ahead of the server's acks
// fills the server's input, the server's answers to our <r/> and our
// answers to its <r/> wait behind that backlog, and the stanzas the
// server keeps for us until our <a/> pile up; Prosody 0.12 then spent
// twice the CPU per message. Why it adapts: Prosody 0.12 reads a
// connection 4 KiB at a time, and while more is waiting it reads the rest
// from a timer, after which it sleeps as long as the read took to
// process; with its archive on, a backlog of a few dozen messages halves
// its rate. 256 allows 256 messages per round trip (2,560 per second at
// 100 ms); raise it on links with a longer round trip.
const DefaultWindow = 256

// paceTarget is how much of the server's work, beyond the quickest write
// to ack delay, the adaptive window lets queue ahead of it (see
// DefaultWindow).
const paceTarget = 50 * time.Millisecond

// pacer is the adaptive window of a State (guarded by State.mu).
type pacer struct {
	win     int   // current window; 0: not adapted yet (the maximum)
	limited bool  // Pace found the window full since the last decision
	base    int64 // shortest write-to-ack delay on the connection, ns; 0: none yet
	extra   int64 // delay the window could not remove at its floor (adaptLocked), ns
	low     int64 // shortest delay of the current round, ns; 0: none yet
	stuck   int   // late rounds at the floor, less the rounds on time there
	connAt  int64 // Unix ns when the connection began (Tees)
	decided int64 // Unix ns of the last decision
}

// reset starts a new connection's adaptation: maybe another path or
// server, so from the maximum again.
func (p *pacer) reset(now int64) { *p = pacer{connAt: now} }

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

// windowLocked returns the window Pace applies now: the adapted one,
// bounded by Config.Window; -1 means no window.
func (st *State) windowLocked() int {
	w := st.cfg.window()
	if w > 0 && st.pace.win > 0 && st.pace.win < w {
		return st.pace.win
	}
	return w
}

// adaptLocked adapts the window to an ack whose newest stanza was first
// written at sent (Unix ns). Its delay, from write to ack, is the time the
// server took for what was queued before it plus a round trip (and up to
// AckDelay before an <r/> covered it).
//
// Once per round (at the first ack of a stanza written after the last
// decision) the window is scaled by (base + paceTarget + extra) / low:
// base is the shortest delay on the connection, low the shortest of the
// round (so that one late ack among several does not count), extra the
// delay the window could not remove. The factor is held between a half
// and 1.25, and the window between 2×AckEvery (an <r/> can be in flight
// while the next stanzas are written) and the maximum. The window changes
// only after a round in which it was full: a sender that does not fill it
// does not queue up the server, whatever the delay. A round still late
// with the window at its floor shows a delay the window does not cause (a
// longer route, a slower server, jitter): the window stays at its floor
// for another round, and after two late rounds there (not counting one on
// time between them) extra is set so that the target lies paceTarget above that delay, and
// the window grows back; extra shrinks by a 64th per round on time.
// Stanzas first written on an earlier connection (retransmitted, or
// restored) tell nothing about this one and are ignored, and so is a delay
// the wall clock made negative.
func (st *State) adaptLocked(sent int64) {
	most := st.cfg.window()
	p := &st.pace
	if most < 0 || sent == 0 || sent < p.connAt {
		return
	}
	now := timeNow()
	if now < sent {
		return // the clock stepped back
	}
	d := max(now-sent, 1)
	if p.base == 0 || d < p.base {
		p.base = d
	}
	if p.low == 0 || d < p.low {
		p.low = d
	}
	if sent < p.decided {
		return // written before the last decision: its effect is not seen yet
	}
	low, limited := p.low, p.limited
	p.decided, p.low, p.limited = now, 0, false
	w := p.win
	if w == 0 {
		w = most
	}
	floor := max(min(2*st.cfg.AckEvery, most), 1)
	target := p.base + int64(paceTarget) + p.extra
	f := float64(target) / float64(low)
	switch {
	case !limited || f >= 1 && w > floor:
		if f >= 1 {
			p.extra -= p.extra / 64
		}
	case f < 1 && float64(w)*max(f, 0.5) >= float64(floor)+0.5:
		// late, and the window can still come down
	case f < 1: // late, and the window is at its floor or would go below it
		w, f = floor, 1
		if p.stuck++; p.stuck >= 2 {
			p.stuck = 0
			p.extra = low - p.base // the delay is learnt: full target above it
		}
	case p.stuck > 0: // on time at the floor after a late round: look again
		f = 1
		p.stuck--
	}
	if !limited {
		return
	}
	f = min(max(f, 0.5), 1.25)
	nw := min(max(int(float64(w)*f+0.5), floor), most)
	grew := nw > w
	p.win = nw
	if grew {
		st.paceLocked()
	}
}

// Pace waits while the window's worth of stanzas written on the current
// connection wait for the server's ack, or until ctx ends. Call it before
// writing an application stanza, after Reserve: Reserve bounds what is
// kept for re-sending, Pace bounds what is in flight, so that a burst does
// not run ahead of the server (see DefaultWindow). It
// returns at once when stream management is not enabled on the connection
// (yet), when the connection ended (re-sending after a reconnection is
// Reserve's business), and when the window is disabled. Goroutines that
// wait together proceed together when an ack makes room, so the window may
// be exceeded by their number.
func (st *State) Pace(ctx context.Context) error {
	for {
		st.mu.Lock()
		w := st.windowLocked()
		c := st.conn
		if w < 0 || c == nil || !c.smOn || c.ended || st.queue.len() < w {
			st.mu.Unlock()
			return nil
		}
		st.pace.limited = true
		if st.paced == nil {
			st.paced = make(chan struct{})
		}
		ch := st.paced
		st.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// paceLocked wakes Pace callers when the window has room; spaceLocked
// calls it whenever stanzas leave the queue, adaptLocked when the window
// grows.
func (st *State) paceLocked() {
	if st.paced != nil && st.queue.len() < st.windowLocked() {
		close(st.paced)
		st.paced = nil
	}
}
