package sm

import (
	"cmp"
	"context"
	"encoding/xml"
	"log/slog"
	"slices"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// Start brings stream management up on a session that NewSession just
// returned, before the application may send anything on it:
//
//   - if the connection resumed the stream, it retransmits the stanzas the
//     server did not acknowledge, in their original order, as first
//     written (same ids), then re-sends what an interrupted earlier re-send
//     (see below) left over;
//   - otherwise it hands the stanzas of the lost stream to the Policy: the
//     ones to report (presence and IQ stanzas under Resend, everything
//     under ReportLost) go to OnLost at once. If the server offers stream
//     management, Start sends <enable/> (with resume='true' unless
//     Config.NoResume) and holds the messages to re-send until the server
//     answers it (see below); if it does not, Start re-sends them itself;
//   - it then starts the ack requester, a goroutine that lives until ctx
//     ends, State.Serve returns, the input stream closes, or Tees is
//     called again. ctx must therefore live as long as the connection (it
//     is not a connect timeout: when it ends, no more acks are requested,
//     and a write of Start or of the requester still under way is cut by
//     closing the connection, never left half-written on an open stream;
//     see SendAck); cancel it when Serve returns.
//
// The answer to <enable/> is processed by the Handler, so call Serve with
// st.Handler(...) right after Start. The messages held for it are re-sent
// by the ack requester, in their original order, once the answer was
// processed: on <enabled/> they are counted on the new stream, so a
// connection lost during the re-send is resumed and only what the server
// did not acknowledge is retransmitted; on <failed/> they are re-sent
// without stream management (their OnResend is their last callback). If
// the connection ends before the answer, they stay queued for the next
// connection, and no callback fired for them. State.WaitEnabled returns
// once the answer was processed and the held messages were re-sent.
//
// Ordering: retransmissions after a resumption, and re-sends on a
// connection without stream management, are written before Start
// returns, so before anything new. The held re-sends are written after
// the answer to <enable/>, which comes a round trip after Start returned:
// an application stanza written in between precedes them on the wire.
// Call WaitEnabled before sending to keep the original order. In every
// case the Policy sees the unacknowledged stanzas of all earlier
// connections in the order they were first written.
//
// OnAcked and OnLost calls for what happened during negotiation (the h of
// <resumed/> or <failed/>, stanzas the Policy reports lost) and OnResend
// calls for the re-sends that Start itself writes run on the calling
// goroutine, before Start returns; OnResend calls for held re-sends run
// on the ack requester's goroutine.
//
// If Start fails (the connection broke), nothing is lost: what was not
// re-sent stays queued for the next connection.
func (st *State) Start(ctx context.Context, s *xmpp.Session) error {
	st.mu.Lock()
	c := st.conn
	switch {
	case c == nil || !c.outSeen:
		st.mu.Unlock()
		return ErrNoTees
	case c.started:
		st.mu.Unlock()
		return ErrStarted
	}
	c.started = true
	c.sess = s
	c.sock = socketOf(s.Conn())
	c.nd = c.sock
	resumed := c.resumed
	_, offered := s.Feature(NS)
	lost, held := 0, 0
	if !resumed {
		lost, held = st.settleLocked(offered)
		st.jid = s.LocalAddr() // the JID a later resumption restores
	}
	st.mu.Unlock()
	st.deliver()
	if lost+held > 0 {
		st.logAt(slog.LevelInfo, "sm: unacknowledged stanzas of the lost stream",
			"policy", st.cfg.Policy.String(), "lost", lost, "to_resend", held)
	}

	err := st.startConn(ctx, s, c, resumed, offered)
	st.deliver()
	if err != nil {
		c.stop() // the connection is unusable: WaitEnabled must not wait for it
		return err
	}
	if resumed {
		st.announceHeld()
	}
	return nil
}

// settleLocked hands the stanzas of a stream that cannot be resumed to the
// Policy: it reports the ones to report and keeps the messages to re-send
// in st.orphans, in the order they were first written. With offered set,
// the connection holds them until the server answers <enable/>.
func (st *State) settleLocked(offered bool) (lost, resend int) {
	c := st.conn
	st.settleRefusalLocked()
	// What the last stream did not acknowledge (including copies of
	// earlier streams' stanzas it re-sent) and what an earlier connection
	// did not get to re-send.
	all := st.queue.drain(nil)
	all = append(all, st.retransmit...)
	all = append(all, st.orphans...)
	all = append(all, st.held...) // ambiguous ones too: the Policy re-sends them
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.ord, b.ord) })
	st.retransmit, st.held = nil, nil
	st.ackedH = st.outH
	st.dropSessionLocked()
	keep := all[:0]
	for _, e := range all {
		if e.raw == nil {
			continue // a gap left by Restore: nothing to report or re-send
		}
		if st.cfg.Policy == ReportLost || e.kind != kindMessage {
			st.pushLocked(evLost, e)
			continue
		}
		keep = append(keep, e)
	}
	lost, resend = len(all)-len(keep), len(keep)
	clear(all[len(keep):])
	st.orphans = keep
	if len(keep) == 0 {
		st.orphans = nil
	}
	c.held = offered && len(keep) > 0
	// After a policy violation, the held messages go one at a time, so
	// that a refusal can be pinned on one (see streamErrorLocked).
	c.careful, st.careful = st.careful && c.held, false
	st.spaceLocked()
	return lost, resend
}

// startConn writes what Start writes and starts the ack requester.
func (st *State) startConn(ctx context.Context, s *xmpp.Session, c *conn, resumed, offered bool) error {
	switch {
	case resumed:
		if err := st.retransmitAll(ctx, s, c); err != nil {
			return err
		}
		// Left over by a re-send that a lost connection interrupted: the
		// stream is on, so they are counted.
		if _, err := st.resendOrphans(ctx, s, c, false, 0); err != nil {
			return err
		}
	case offered:
		st.mu.Lock()
		c.bookAt, c.progOK = timeNow(), false // bounded until written (see deadlineLocked)
		c.armLocked()
		c.enableOut, c.enabling = true, true // its answer may be read before the write returns
		st.mu.Unlock()
		en := stanza.Enable{Resume: !st.cfg.NoResume, Max: st.cfg.Max}
		if _, err := wire.Write(ctx, s, en.TokenReader()); err != nil {
			return err
		}
		st.mu.Lock()
		c.bookAt, c.progOK = 0, false
		c.enableAt = timeNow() // the answer is awaited from here (AckTimeout)
		c.armLocked()
		st.mu.Unlock()
	default:
		st.logAt(slog.LevelInfo, "sm: server does not offer stream management")
		if _, err := st.resendOrphans(ctx, s, c, false, 0); err != nil {
			return err
		}
	}
	st.mu.Lock()
	switch {
	case resumed:
		c.setReadyLocked(nil)
	case !offered:
		c.setReadyLocked(ErrNotEnabled)
	} // else the answer to <enable/> decides
	st.mu.Unlock()
	if resumed || offered {
		st.workers.Go(func() { st.requester(ctx, s, c) })
	}
	return nil
}

// retransmitAll re-sends, in order, the stanzas kept by <resumed/>.
func (st *State) retransmitAll(ctx context.Context, s *xmpp.Session, c *conn) error {
	for {
		st.mu.Lock()
		if len(st.retransmit) == 0 {
			st.retransmit = nil
			st.mu.Unlock()
			return nil
		}
		e := st.retransmit[0]
		st.mu.Unlock()
		if st.dropDamaged(&st.retransmit, e) {
			continue
		}
		written, err := true, error(nil)
		if e.raw != nil { // else a gap left by Restore: nothing to write
			written, err = st.writeCopy(ctx, s, c, e, rawReader(e.raw))
		}
		st.mu.Lock()
		if written && len(st.retransmit) > 0 && st.retransmit[0].ord == e.ord { // unless Abandon emptied it meanwhile
			st.retransmit[0] = entry{}
			st.retransmit = st.retransmit[1:]
		}
		st.spaceLocked()
		st.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// resendOrphans re-sends, in order, the messages in st.orphans, each with
// a <delay/> stamped with its first write and announced by OnResend just
// before. With request set (on the ack requester's goroutine), it sends
// the <r/> that the request rules call for between two re-sends. It
// stops when the connection was stopped, and after max messages if max >
// 0 (a careful re-send: each is followed by an <r/>).
func (st *State) resendOrphans(ctx context.Context, s *xmpp.Session, c *conn, request bool, max int) (n int, err error) {
	defer func() {
		if n > 0 {
			st.logAt(slog.LevelInfo, "sm: re-sent the messages of the lost stream", "resent", n)
		}
	}()
	for {
		select {
		case <-c.done:
			return n, errStopped
		default:
		}
		st.mu.Lock()
		if len(st.orphans) == 0 {
			st.orphans = nil
			st.spaceLocked()
			st.mu.Unlock()
			return n, nil
		}
		e := st.orphans[0]
		st.mu.Unlock()
		if st.dropDamaged(&st.orphans, e) {
			continue
		}
		st.mu.Lock()
		if len(st.orphans) == 0 || st.orphans[0].ord != e.ord {
			st.mu.Unlock()
			continue
		}
		if max > 0 {
			c.carefulOn = e.ord
		}
		st.pushLocked(evResend, e)
		st.mu.Unlock()
		st.deliver()
		st.mu.Lock()
		c.copyOrphan = true // writeCopy resets it
		st.mu.Unlock()
		written, err := st.writeCopy(ctx, s, c, e, withDelay(e.raw, e.sent))
		st.mu.Lock()
		if written && len(st.orphans) > 0 && st.orphans[0].ord == e.ord { // unless Abandon emptied it meanwhile
			st.orphans[0] = entry{}
			st.orphans = st.orphans[1:]
		}
		st.spaceLocked()
		st.mu.Unlock()
		if err != nil {
			return n, err
		}
		n++
		if request {
			if _, _, err := st.request(ctx, s, c, max > 0); err != nil {
				return n, err
			}
		}
		if max > 0 && n >= max {
			return n, nil
		}
	}
}

// writeCopy writes e again (a retransmission or a re-send) through r. The
// copy, which the outbound scanner queues under a new number, keeps e's
// place in the order of first writes. written reports whether the copy
// left the queue of e: it was written, or at least queued (a write that
// failed after the scanner saw the whole stanza).
func (st *State) writeCopy(ctx context.Context, s *xmpp.Session, c *conn, e entry, r xml.TokenReader) (written bool, err error) {
	st.mu.Lock()
	c.copying, c.copySeen, c.copyOf = true, false, e
	st.mu.Unlock()
	_, err = wire.Write(ctx, s, r)
	st.mu.Lock()
	written = err == nil || c.copySeen
	c.copying, c.copySeen, c.copyOf, c.copyOrphan, c.copyHeld = false, false, entry{}, false, false
	st.mu.Unlock()
	return written, err
}
