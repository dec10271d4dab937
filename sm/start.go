package sm

import (
	"context"
	"log/slog"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// Start brings stream management up on a session that NewSession just
// returned, before the application may send anything on it:
//
//   - if the connection resumed the stream, it retransmits the stanzas the
//     server did not acknowledge, in their original order, as first
//     written (same ids);
//   - otherwise it hands the stanzas of the lost stream to the Policy and,
//     if the server offers stream management, sends <enable/> (with
//     resume='true' unless Config.NoResume), then re-sends under the
//     Resend policy (so the re-sent messages are counted on the new
//     stream);
//   - it then starts the ack requester, a goroutine that lives until ctx
//     ends, State.Serve returns, the input stream closes, or Tees is
//     called again. ctx must therefore live as long as the connection (it
//     is not a connect timeout: when it ends, a send in progress fails and
//     no more acks are requested); cancel it when Serve returns.
//
// The answer to <enable/> is processed by the Handler, so call Serve with
// st.Handler(...) right after Start. OnAcked, OnLost and OnResend calls for
// what happened during negotiation run on the calling goroutine, before
// Start returns.
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
	resumed := c.resumed
	if !resumed {
		// The previous stream is over: what it did not acknowledge goes to
		// the policy, oldest first.
		orphans := st.queue.drain(nil)
		orphans = append(orphans, st.retransmit...)
		st.orphans = append(orphans, st.orphans...)
		st.retransmit = nil
		st.ackedH = st.outH
		st.dropSessionLocked()
		st.jid = s.LocalAddr() // the JID a later resumption restores
	}
	st.mu.Unlock()
	st.deliver()

	_, offered := s.Feature(NS)
	switch {
	case resumed:
		if err := st.retransmitAll(ctx, s); err != nil {
			return err
		}
	case offered:
		en := stanza.Enable{Resume: !st.cfg.NoResume, Max: st.cfg.Max}
		if err := s.Send(ctx, en.TokenReader()); err != nil {
			return err
		}
	default:
		st.logAt(slog.LevelInfo, "sm: server does not offer stream management")
	}
	err := st.applyPolicy(ctx, s)
	if err == nil && (resumed || offered) {
		go st.requester(ctx, s, c)
	}
	st.deliver()
	return err
}

// retransmitAll re-sends, in order, the stanzas kept by <resumed/>.
func (st *State) retransmitAll(ctx context.Context, s *xmpp.Session) error {
	for {
		st.mu.Lock()
		if len(st.retransmit) == 0 {
			st.retransmit = nil
			st.mu.Unlock()
			return nil
		}
		raw := st.retransmit[0].raw
		st.mu.Unlock()
		if err := s.Send(ctx, rawReader(raw)); err != nil {
			return err
		}
		st.mu.Lock()
		if len(st.retransmit) > 0 { // unless Abandon emptied it meanwhile
			st.retransmit[0] = entry{}
			st.retransmit = st.retransmit[1:]
		}
		st.spaceLocked()
		st.mu.Unlock()
	}
}

// applyPolicy disposes of the stanzas of a stream that was not resumed.
func (st *State) applyPolicy(ctx context.Context, s *xmpp.Session) error {
	resent, lost := 0, 0
	defer func() {
		if resent+lost > 0 {
			st.logAt(slog.LevelInfo, "sm: unacknowledged stanzas of the lost stream",
				"policy", st.cfg.Policy.String(), "resent", resent, "lost", lost)
		}
	}()
	for {
		st.mu.Lock()
		if len(st.orphans) == 0 {
			st.orphans = nil
			st.spaceLocked()
			st.mu.Unlock()
			return nil
		}
		e := st.orphans[0]
		if st.cfg.Policy == ReportLost || e.kind != kindMessage {
			st.orphans[0] = entry{}
			st.orphans = st.orphans[1:]
			st.pushLocked(evLost, e)
			st.mu.Unlock()
			lost++
			continue
		}
		st.pushLocked(evResend, e)
		st.mu.Unlock()
		st.deliver()
		if err := s.Send(ctx, withDelay(e.raw, e.sent)); err != nil {
			return err
		}
		st.mu.Lock()
		if len(st.orphans) > 0 { // unless Abandon emptied it meanwhile
			st.orphans[0] = entry{}
			st.orphans = st.orphans[1:]
		}
		st.mu.Unlock()
		resent++
	}
}
