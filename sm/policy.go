package sm

import (
	"errors"

	"mellium.im/xmpp/stream"
)

// streamErrorLocked applies the rules for a stream error from the server
// (see the package documentation, "Failed resumptions" and "Policy
// violations"). The caller holds st.mu; it runs in the inbound tee, so it
// only changes state and queues callbacks.
func (c *conn) streamErrorLocked(err error) {
	st := c.st
	var se stream.Error
	if !errors.As(err, &se) {
		return
	}
	switch {
	case c.resumed && !c.gotAck && resumptionSuspect(se):
		// A resumed stream that dies with a parse or size error before the
		// server acknowledged anything on it: the server is most likely
		// parsing it with the state of the connection that was cut (Prosody
		// 0.12), and would do the same again. Start afresh.
		c.failedResume = true
		st.dropSessionLocked()
	case se.Err == stream.PolicyViolation.Err:
		// The server refuses something: it closed the session, which cannot
		// be resumed. Pin the refusal on a message only when it was the
		// only one unacknowledged, re-sent carefully; otherwise re-send
		// the unacknowledged messages one at a time on the next stream.
		st.dropSessionLocked()
		if c.careful {
			// Decided when the next connection settles the queue: the
			// message in flight may not be queued yet (the tee sees a
			// write after the peer does).
			st.refusal = &refusal{ord: c.carefulOn, err: se}
		} else {
			st.careful = true
		}
	}
}

// refusal is a policy violation that may be pinned on the message of
// order ord.
type refusal struct {
	ord uint64
	err stream.Error
}

// settleRefusalLocked pins a pending refusal if it can, before the queue
// goes to the Policy; otherwise the next re-send is careful.
func (st *State) settleRefusalLocked() {
	r := st.refusal
	if r == nil {
		return
	}
	st.refusal = nil
	if !st.pinLocked(r.ord, r.err) {
		st.careful = true
	}
}

// resumptionSuspect reports whether a stream error right after a
// resumption is taken for a failed resumption.
func resumptionSuspect(se stream.Error) bool {
	switch se.Err {
	case stream.NotWellFormed.Err, stream.PolicyViolation.Err, "stanza-too-big":
		return true
	}
	return false
}

// pinLocked reports the message of order ord refused, if it is the only
// message waiting for an ack. The other unacknowledged stanzas leave the
// queue for the Policy (the session is gone).
func (st *State) pinLocked(ord uint64, se stream.Error) bool {
	n, found := 0, false
	for i := range st.queue.n {
		e := &st.queue.buf[(st.queue.head+i)%len(st.queue.buf)]
		if e.kind == kindMessage {
			n++
			found = found || e.ord == ord
		}
	}
	if n != 1 || !found {
		return false
	}
	for _, e := range st.queue.drain(nil) {
		if e.kind == kindMessage {
			st.refuseLocked(e, se)
			continue
		}
		st.orphans = append(st.orphans, e)
	}
	st.ackedH = st.outH
	st.spaceLocked()
	return true
}
