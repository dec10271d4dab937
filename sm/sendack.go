package sm

import (
	"context"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// SendAck writes an unsolicited <a h/> on s now (XEP-0198 allows one at
// any time): the count of stanzas received, bounded by Config.Handled,
// never below an h sent before. XEP-0198 recommends one just before
// closing a stream gracefully, so that the server does not send again what
// was received; a client whose Handled bound moved sends one so that the
// server learns it without waiting for its next <r/>.
//
// It is the only way to send an ack besides the answers to the server's
// <r/>, and it orders itself with them: its h is chosen while it holds
// the session's output, so acks reach the server in the order of their
// values (a server ends the stream on an h below one it got before:
// Prosody 0.12 does).
//
// ctx is never handed to mellium (whose writes apply a context's end to
// the connection, possibly after they returned and while another
// goroutine writes). If ctx is done already, SendAck returns ctx.Err()
// and writes nothing. If ctx ends while SendAck waits for the output or
// writes, the connection is closed, since half an element cannot be taken
// back, and SendAck returns ctx.Err(); a failed write closes it too.
// Either way reconnect: the stream is resumed as after any loss. A write
// refused because the stream was closed already (xmpp.ErrOutputStreamClosed:
// nothing written) leaves the connection to the closing handshake.
func (st *State) SendAck(ctx context.Context, s *xmpp.Session) error {
	return wire.Guard(ctx, s, func() error { return st.writeAck(s) })
}

// writeAck writes the <a/> of SendAck. st.ackMu is held from before it
// waits for mellium's output lock until it chose h, as the answers to <r/>
// hold it (see Handler), so acks are written in the order of their values.
func (st *State) writeAck(s *xmpp.Session) error {
	st.ackMu.Lock()
	w := s.TokenWriter() // mellium's output lock, until Close
	st.mu.Lock()
	h := st.inH
	st.mu.Unlock()
	h = st.ackFor(h)
	st.ackMu.Unlock()
	defer w.Close()
	if _, err := (stanza.Ack{H: h}).WriteXML(w); err != nil {
		return err
	}
	return w.Flush()
}
