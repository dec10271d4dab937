package sm

import "context"

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

// Pace waits while Config.Window stanzas written on the current connection
// wait for the server's ack, or until ctx ends. Call it before writing an
// application stanza, after Reserve: Reserve bounds what is kept for
// re-sending, Pace bounds what is in flight, so that a burst does not run
// ahead of the server (see DefaultWindow). It returns at once when stream
// management is not enabled on the connection (yet), when the connection
// ended (re-sending after a reconnection is Reserve's business), and when
// the window is disabled. Goroutines that wait together proceed together
// when an ack makes room, so the window may be exceeded by their number.
func (st *State) Pace(ctx context.Context) error {
	w := st.cfg.window()
	if w < 0 {
		return nil
	}
	for {
		st.mu.Lock()
		c := st.conn
		if c == nil || !c.smOn || c.ended || st.queue.len() < w {
			st.mu.Unlock()
			return nil
		}
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
// calls it whenever stanzas leave the queue.
func (st *State) paceLocked() {
	if st.paced != nil && st.queue.len() < st.cfg.window() {
		close(st.paced)
		st.paced = nil
	}
}
