package sm

// Coalescing during bursts.
//
// Go sets TCP_NODELAY on its TCP connections, so every write of a stanza
// goes out at once in a segment of its own, and the writer's system call
// pays for the transmit and, on loopback, for the server's receive. While
// the window holds a burst back, that is most of what a paced sender
// spends beyond an unpaced one (docs/benchmarks.md, "Where the tracked
// sender's CPU goes"). So once a stanza is written with at least
// coalesceAt stanzas unacknowledged, the State turns Nagle's algorithm on
// for the socket under the session (c.nd, Linux only): a write while
// bytes are in flight then only queues, and the queue goes out with the
// peer's next acknowledgement, coalesced. Every <r/> is booked with
// TCP_NODELAY set again, before it is written (setting it sends what the
// kernel held), so a request never waits for the peer's delayed
// acknowledgement (Nagle left on for good held a lone message's <r/> for
// about 40 ms); so is it set when a sender has to wait for room (Pace,
// Reserve, ReserveAnswers), since nothing more is written until an ack,
// which needs what is held. A lone message, written with nothing in
// flight, goes out with TCP_NODELAY as before.
//
// What it costs: Nagle is turned on only after a write and off only when
// a request is booked, a sender waits for room, or <failed/> ends stream
// management. So a stanza written with Nagle on, the last ones of a burst
// and any written after acks brought the count below coalesceAt (a
// receipt, an IQ result) alike, can reach the server later: at most
// AckDelay later, when the time rule's <r/> sends it, or sooner with the
// server's next acknowledgement (its delayed ACK: about 40 ms on Linux,
// up to 200 ms elsewhere). The <r/> itself is never held, so the server's
// <a/> is not later; delivery to the recipient can be.
//
// coalesceAt is MinWindow: with that many in flight the server has a
// backlog to work through, and a stanza held until its next
// acknowledgement (which rides on what the server sends back meanwhile)
// would mostly have waited in that backlog anyway; not at the end of a
// burst, when the backlog drains: that is the bounded hold above.
//
// Nor is it turned on by a write that fills the window: the next sender
// waits in Pace, which turns it off again with nothing held in between
// (at the default window's floor, MinWindow, every window-full would
// otherwise cost two system calls for nothing).
//
// internal/smhook.NoCoalesce, read by New, turns coalescing off for the
// State (State.noCoalesce): a switch that only this module's bench sets,
// for same-binary comparisons (docs/benchmarks.md), not an interface.
const coalesceAt = MinWindow

// coalesceLocked turns Nagle's algorithm on after a stanza was written
// with n stanzas unacknowledged (its own included), if n is a burst, the
// window leaves room for more and no request is being written.
func (c *conn) coalesceLocked(n int) {
	if c.nagle || n < coalesceAt || c.nd == nil || !c.smOn || c.bookAt != 0 || c.st.noCoalesce {
		return
	}
	if w := c.st.windowLocked(); w >= 0 && n >= w {
		return // the window is full: Pace would turn it off at once
	}
	if c.nagle = setNoDelay(c.nd, false); !c.nagle {
		c.nd = nil // the socket is gone: coalescing ends
	}
}

// flushLocked sets TCP_NODELAY again, which sends what Nagle's algorithm
// held: before a request is written, and when a sender has to wait for
// room.
func (c *conn) flushLocked() {
	if !c.nagle {
		return
	}
	c.nagle = false
	if !setNoDelay(c.nd, true) {
		// The socket is gone (the connection ended): nothing to send,
		// and coalescing ends.
		c.nd = nil
	}
}
