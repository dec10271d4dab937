package sm

import (
	"encoding/xml"
	"errors"
	"log/slog"
	"syscall"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// Serve serves the session with st.Handler(inner) (see Handler) and stops
// the connection's ack requester when the session ends. When stream
// management closed the stream (a *HandledCountTooHighError or a
// *ProtocolError), Serve returns that error rather than whatever the
// closing stream produced. When the server closed it with a stream error,
// Serve returns that mellium stream.Error (test it with errors.Is, e.g.
// against stream.PolicyViolation), even where mellium's Serve reported the
// failure of its reply instead.
func (st *State) Serve(s *xmpp.Session, inner xmpp.Handler) error {
	h := st.Handler(inner).(handler)
	err := s.Serve(h)
	if c := h.c; c != nil {
		c.stop()
		st.mu.Lock()
		c.ended = true
		switch {
		case c.fatal != nil:
			err = c.fatal
		case c.peerErr != nil:
			err = c.peerErr
		case c.resumed && !c.gotAck && (c.stuckLocked() || errors.Is(err, syscall.ETIMEDOUT)):
			// The connection ended while the server had taken no request
			// of ours for longer than the ack bound, or the kernel gave up
			// on it (TCP_USER_TIMEOUT: no byte of ours taken for 35 s),
			// before the write bound would have ended it with
			// ErrAckTimeout: a failed resumption all the same (see
			// deadLocked).
			c.failedResume = true
			st.dropSessionLocked()
		}
		failedResume := c.failedResume
		st.mu.Unlock()
		if failedResume {
			st.logAt(slog.LevelWarn, "sm: resumed connection lost before any ack; the next connection starts a new session", "error", err)
		}
	}
	return err
}

// Handler returns the handler to give to Session.Serve for the current
// connection (call it after Tees); State.Serve is the simpler way to use
// it. The handler consumes the stream management elements and passes
// everything else to inner (nil: dropped):
//
//   - <r/>: answered at once with <a h/>, written through the handler's
//     own encoder, with the count of stanzas received before that <r/>
//     (bounded by Config.Handled);
//   - <a h/>: releases the acknowledged stanzas and calls OnAcked for each,
//     in order, on the Serve goroutine;
//   - <enabled/> (the answer to <enable/>): records the SM-ID, resume, max
//     and location, and lets the ack requester re-send the messages Start
//     held (see Start); one that answers nothing is logged and ignored;
//   - <failed/> (the answer to <enable/>): stream management is off for
//     this connection. Stanzas written since <enable/> are dropped from
//     the queue without a callback: they were written to a live stream,
//     but no ack can ever cover them (rely on receipts instead). The
//     messages Start held are re-sent without stream management. A
//     <failed/> that answers nothing (the answer came already, or the
//     stream was resumed) is logged and ignored.
//
// When the server acknowledges more stanzas than were sent, or sends an
// <a/> without a valid h, the handler writes the corresponding stream error
// and returns a *HandledCountTooHighError or a *ProtocolError, and
// Session.Serve closes the stream. (Session.Serve may return the error of
// that close instead; State.Serve returns the typed error.) The stream is
// not resumed.
func (st *State) Handler(inner xmpp.Handler) xmpp.Handler {
	st.mu.Lock()
	c := st.conn
	st.mu.Unlock()
	return handler{c: c, inner: inner}
}

type handler struct {
	c     *conn
	inner xmpp.Handler
}

func (h handler) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Space != NS || h.c == nil {
		if h.inner == nil {
			return nil
		}
		return h.inner.HandleXMPP(t, start)
	}
	c := h.c
	switch start.Name.Local {
	case "r":
		// The first token takes mellium's output lock (the handler's
		// writer takes it on first use): no other ack is chosen and
		// written in between (see writeAck).
		c.st.ackMu.Lock()
		h := c.st.ackFor(c.popSnapshot())
		_, err := stanza.Ack{H: h}.WriteXML(t)
		c.st.ackMu.Unlock()
		return err
	case "a":
		return c.handleAck(t, start)
	case "enabled":
		c.handleEnabled(t, start)
	case "failed":
		c.handleFailed(t, start)
	default:
		c.st.logAt(slog.LevelDebug, "sm: ignoring element", "element", start.Name.Local)
	}
	return nil
}

// decodeSM decodes the element that starts with start into v.
func decodeSM(r xml.TokenReader, start *xml.StartElement, v any) error {
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
	return d.Decode(v)
}

// fail records err as the reason the connection ends, writes the stream
// error it stands for through the handler's encoder and returns err, so
// that Serve closes the stream.
//
// mellium v0.23.0 does not flush the stream error that Serve itself writes
// for a handler error (Session.sendError encodes it, then closes the stream
// without a flush), so the handler writes it: mellium flushes what a
// handler wrote when the handler returns. For the same reason Serve may
// return the error of that close instead of err; State.Serve returns err.
func (c *conn) fail(t xmlstream.TokenWriter, err error) error {
	c.st.mu.Lock()
	if c.fatal == nil {
		c.fatal = err
	}
	c.st.mu.Unlock()
	var se stream.Error
	if errors.As(err, &se) {
		xmlstream.Copy(t, se.TokenReader())
	}
	return err
}

func (c *conn) handleAck(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	st := c.st
	var a stanza.Ack
	if err := decodeSM(t, start, &a); err != nil {
		// Stanzas written until the stream is closed are still queued: they
		// go to the Policy with the others on the next connection.
		st.mu.Lock()
		st.dropSessionLocked()
		st.mu.Unlock()
		c.stop()
		st.logAt(slog.LevelWarn, "sm: invalid ack from the server; closing the stream", "error", err)
		return c.fail(t, &ProtocolError{Element: "a", Err: err})
	}
	now := timeNow()
	st.mu.Lock()
	n, tooHigh := st.ackLocked(a.H)
	sent := st.outH
	if tooHigh {
		// Maybe not: see settleWrites. Judged again once the writes
		// under way are counted, against the count then: a stanza
		// written after the server sent this <a/> must not make a wrong
		// h pass.
		s, hook := c.sess, st.settleHook
		st.mu.Unlock()
		if hook != nil {
			hook()
		}
		settled, ok := st.settleWrites(s)
		st.mu.Lock()
		if ok {
			sent = settled
		}
		if !exceeds(a.H, st.ackedH, sent) {
			if n, tooHigh = st.ackLocked(a.H); tooHigh {
				sent = st.outH
			}
		}
	}
	if tooHigh {
		st.dropSessionLocked()
		st.mu.Unlock()
		c.stop()
		st.logAt(slog.LevelWarn, "sm: server acknowledged more stanzas than were sent; closing the stream",
			"h", a.H, "sent", sent)
		return c.fail(t, &HandledCountTooHighError{H: a.H, SendCount: sent})
	}
	// A stale answer acknowledges nothing new while stanzas written before
	// our last <r/> wait for an ack: it is no progress (see "Dead
	// connections"), so the wait for an answer that covers them goes on
	// from where it was, and it is neither the server's first ack on the
	// connection nor a round-trip sample.
	covered := c.coveredLocked()
	stale := n == 0 && !covered
	if c.aRecv < c.rSent {
		c.aRecv++
	}
	c.lastAct = now
	if !stale {
		c.gotAck = true
		if c.rAt != 0 {
			st.sampleRTTLocked(now - c.rAt)
			c.rAt = 0
		}
		if c.tOrd != 0 && c.aRecv >= c.tOrd {
			if st.cfg.Window == 0 && st.conn == c && st.win.sample(now, c.tAt, now-c.tAt, c.tN) {
				st.paceLocked()
			}
			c.tOrd = 0
		}
		c.progOK = false // what the socket showed before is moot
	}
	// What is not covered is awaited from a written <r/> only: one booked
	// and still waiting for mellium's output (behind a large write on a
	// slow link) starts the bound when it is written (wroteLocked).
	fromWritten := c.bookAt == 0
	switch {
	case stale:
		if c.rWait == 0 && fromWritten {
			c.rWait = now // an answer that covers them is awaited from now
			c.markLocked(now)
			c.armLocked()
		}
	case c.aRecv < c.rOut || !covered && fromWritten:
		// Progress: the bound starts again, for the requests still
		// unanswered or for what the answers did not cover yet.
		c.rWait = now
		c.markLocked(now)
		c.armLocked()
	default:
		c.rWait = 0
	}
	if n > 0 && c.aRecv == c.rSent && c.sinceReq == 0 && st.queue.len() > 0 {
		// Every <r/> is answered, the server makes progress, but stanzas
		// the requests covered are still unacknowledged: ask once more
		// after AckDelay. (An answer without progress does not re-arm, so
		// a server that lost stanzas is not polled forever: its stale
		// answers leave the ack bound running, the connection ends, and
		// they are retransmitted on resumption.)
		c.sinceReq, c.uncovered = 1, timeNow()
	}
	st.mu.Unlock()
	c.signal() // the rules' timers moved (idle probe, re-arm)
	st.deliver()
	return nil
}

// settleWrites returns the outbound count once every stanza whose bytes
// reached s's connection is counted (ok false: no session). mellium
// copies what it writes to the outbound tee only after the connection
// took it (TeeOut is a MultiWriter behind the connection), all under its
// output lock: between the two, the server may read a stanza and
// acknowledge it (XEP-0198 lets it send an <a/> at any time) before outH
// counts it. Holding that lock, as our <r/> does before its write (so the
// answers to our own requests never run ahead of the count), no write is
// under way: the count is read then. It runs on the reading goroutine, as
// the answer to the server's <r/> takes the same lock there: a writer
// that cannot finish (a stuck connection) holds it until the ack bound or
// the write bound expires the connection's deadlines, and the connection
// ends as dead either way. The lock order, mellium's output then st.mu,
// is the tees'.
func (st *State) settleWrites(s *xmpp.Session) (sent uint32, ok bool) {
	if s == nil {
		return 0, false // no Start: nothing was written through the tees
	}
	w := s.TokenWriter() // mellium's output lock, held by any write under way
	st.mu.Lock()
	sent = st.outH
	st.mu.Unlock()
	w.Close()
	return sent, true
}

// exceeds reports whether h acknowledges more than sent, counting
// from acked (modulo 2^32, as ackLocked does).
func exceeds(h, acked, sent uint32) bool {
	d := int32(h - acked)
	return d > 0 && uint32(d) > sent-acked
}

// coveredLocked reports whether the server acknowledged every stanza
// written before our last <r/> (c.need, see needLocked). The caller holds
// st.mu.
func (c *conn) coveredLocked() bool {
	return !c.needOK || int32(c.st.ackedH-c.need) >= 0
}

func (c *conn) handleEnabled(t xml.TokenReader, start *xml.StartElement) {
	st := c.st
	var en stanza.Enabled
	err := decodeSM(t, start, &en)
	st.mu.Lock()
	if !c.enabling {
		// It answers nothing (see handleFailed): the SM-ID, the counts
		// and the acks told stay as they are; an inbound count taken
		// back would ack below an h sent before.
		st.mu.Unlock()
		st.logAt(slog.LevelWarn, "sm: ignoring an <enabled/> that answers no request of ours")
		return
	}
	c.enabling = false
	c.smOn = true
	c.lastAct = timeNow()
	if st.cfg.Window == 0 && st.conn == c && c.enableAt != 0 {
		// Nothing was in flight: the route's first measure.
		st.win.sample(c.lastAct, c.enableAt, c.lastAct-c.enableAt, 0)
	}
	if err != nil {
		st.dropSessionLocked()
		st.max, st.location = 0, ""
	} else {
		st.id = en.ID
		st.resumable = en.Resume && en.ID != "" && !st.cfg.NoResume
		st.max = en.Max
		st.location = en.Location
	}
	resumable, max := st.resumable, st.max
	if !c.held { // else the requester re-sends the held messages first
		c.setReadyLocked(nil)
	}
	st.mu.Unlock()
	c.signal()
	if err != nil {
		st.logAt(slog.LevelWarn, "sm: enabled without resumption: invalid <enabled/>", "error", err)
		return
	}
	st.logAt(slog.LevelInfo, "sm: stream management enabled", "resumable", resumable, "max", max)
	st.logAt(slog.LevelDebug, "sm: stream management session", "id", en.ID, "location", en.Location)
}

func (c *conn) handleFailed(t xml.TokenReader, start *xml.StartElement) {
	st := c.st
	var f stanza.Failed
	_ = decodeSM(t, start, &f) // the condition is informative only
	st.mu.Lock()
	if !c.enabling {
		// It answers nothing: no <enable/> awaits its answer (it came
		// already, the stream was resumed, or none was sent). Stream
		// management stays as it is, and so does every stanza queued for
		// an ack; a server that did stop stream management stops
		// answering <r/>, and the ack bound ends the connection.
		st.mu.Unlock()
		st.logAt(slog.LevelWarn, "sm: ignoring a <failed/> that answers no request of ours",
			"condition", string(f.Condition))
		return
	}
	c.enabling = false
	c.smOn, c.refused = false, true
	c.flushLocked()
	c.outActive.Store(false)
	st.dropSessionLocked()
	dropped := st.queue.len()
	for st.queue.len() > 0 {
		st.queue.pop()
	}
	st.ackedH = st.outH
	st.spaceLocked()
	if !c.held {
		c.setReadyLocked(ErrNotEnabled)
	}
	st.mu.Unlock()
	// The requester re-sends what Start held, without stream management,
	// then stops: there are no acks to request.
	c.signal()
	st.logAt(slog.LevelWarn, "sm: server refused to enable stream management",
		"condition", string(f.Condition), "unconfirmed", dropped)
}
