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
// flight, goes out with TCP_NODELAY as before: Nagle is turned on only
// after a write and off whenever a request is booked, and a stanza
// written with Nagle on is covered by a request within AckDelay (the time
// rule), which sends it if the peer's acknowledgement did not.
//
// coalesceAt is MinWindow: with that many in flight the server has a
// backlog to work through, and a stanza held until its next
// acknowledgement (which rides on what the server sends back meanwhile)
// would have waited in that backlog anyway.
const coalesceAt = MinWindow

// coalesceLocked turns Nagle's algorithm on after a stanza was written
// with n stanzas unacknowledged (its own included), if n is a burst and
// no request is being written.
func (c *conn) coalesceLocked(n int) {
	if c.nagle || n < coalesceAt || c.nd == nil || !c.smOn || c.bookAt != 0 {
		return
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
