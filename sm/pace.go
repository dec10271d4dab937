package sm

import (
	"context"
	"time"
)

// DefaultWindow is the default Config.Window: the most stanzas Pace lets
// wait for the server's ack on a connection. Within it the window adapts
// to the server: it shrinks while stanzas take more than 50 ms longer from
// their write to the server's ack than the quickest on the connection, and
// grows back, while it is full, when acks come sooner. Every stanza in
// flight is work the server queues before it answers, so the window
// settles at the server's rate times 50 ms: all 256 for a server that
// handles 5,000 messages a second (ejabberd, which acknowledges later,
// needs that many on loopback), and 16 to 45 for Prosody 0.12 archiving
// every message for an offline recipient (300 to 600 a second). A
// constant delay, a long round trip or a server that always answers late,
// does not shrink it.
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
	connAt  int64 // Unix ns when the connection began (Tees)
	decided int64 // Unix ns of the last decision
}

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
// AckDelay before an <r/> covered it). Once per round, for a stanza
// written after the last decision, the window is scaled by how far that
// delay is from the shortest one on the connection plus paceTarget: by at
// most half down (one late answer, a pause of this process, does not
// empty the pipe) and a quarter up, and up only if the window was full
// meanwhile. It stays between 2×AckEvery, so that an <r/> can be in
// flight while the next stanzas are written, and the maximum. Stanzas
// first written on an earlier connection (retransmitted, or restored)
// tell nothing about this one and are ignored.
func (st *State) adaptLocked(sent int64) {
	most := st.cfg.window()
	p := &st.pace
	if most < 0 || sent == 0 || sent < p.connAt {
		return
	}
	now := timeNow()
	d := max(now-sent, 1)
	if p.base == 0 || d < p.base {
		p.base = d
	}
	if sent < p.decided {
		return // written before the last decision: its effect is not seen yet
	}
	p.decided = now
	w := p.win
	if w == 0 {
		w = most
	}
	f := float64(p.base+int64(paceTarget)) / float64(d)
	f = min(max(f, 0.5), 1.25)
	if f > 1 && !p.limited {
		f = 1
	}
	p.limited = false
	nw := min(max(int(float64(w)*f+0.5), 2*st.cfg.AckEvery, 1), most)
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
