package sm

import (
	"context"
	"log/slog"
	"time"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/stanza"
)

func timeNow() int64 { return time.Now().UnixNano() }

// requester sends <r/> for one connection, following the policy of
// nextRequest, and re-sends the messages Start held for the answer to
// <enable/> once the Handler processed it (a handler must not send on the
// session, so this happens here). Start runs it on its own goroutine; it
// returns when ctx ends, when the connection is detached (Tees called
// again, input stream closed, fatal stream management error), when the
// server refused stream management, or when a send fails. It uses one
// timer, however many stanzas are written.
func (st *State) requester(ctx context.Context, s *xmpp.Session, c *conn) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		st.mu.Lock()
		resend := c.held && (c.smOn || c.refused)
		refused := c.refused
		st.mu.Unlock()
		if resend {
			if _, err := st.resendOrphans(ctx, s, c, !refused); err != nil {
				st.logAt(slog.LevelDebug, "sm: re-send interrupted", "error", err)
				return
			}
			st.mu.Lock()
			c.held = false
			if refused {
				c.setReadyLocked(ErrNotEnabled)
			} else {
				c.setReadyLocked(nil)
			}
			st.mu.Unlock()
			continue
		}
		if refused {
			return // no acks to request
		}
		sent, wait, err := st.request(ctx, s, c)
		if err != nil {
			st.logAt(slog.LevelDebug, "sm: ack requester stops", "error", err)
			return
		}
		if sent {
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-c.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// request sends an <r/> if nextRequest calls for one now; otherwise wait
// is how long until the time rule may fire (0: wait for a signal).
func (st *State) request(ctx context.Context, s *xmpp.Session, c *conn) (sent bool, wait time.Duration, err error) {
	st.mu.Lock()
	send, wait := c.nextRequest(timeNow(), st.cfg)
	if send {
		// Book the request before writing it: its answer can be
		// processed before the write returns. A stanza written in
		// between is covered too but counted as not covered, which at
		// worst costs one extra <r/>.
		c.rSent++
		c.sinceReq, c.uncovered = 0, 0
	}
	st.mu.Unlock()
	if !send {
		return false, wait, nil
	}
	return true, 0, s.Send(ctx, stanza.AckRequest{}.TokenReader())
}

// nextRequest decides whether to send an <r/> now and, if not, how long
// until the time rule may fire (0: wait for a signal). The rules:
//
//   - nothing is requested before the server enabled stream management;
//     once it did, the stanzas written since <enable/> are covered by the
//     time rule, counted from when they were written (so at once if the
//     answer took longer than AckDelay);
//   - count rule: once AckEvery stanzas were written since the last <r/>,
//     request, unless an earlier <r/> is still unanswered (its <a/> will
//     wake the requester);
//   - time rule: once the oldest stanza not covered by an <r/> has waited
//     AckDelay, request even if an <r/> is unanswered, so that every
//     stanza is covered within AckDelay.
func (c *conn) nextRequest(now int64, cfg Config) (bool, time.Duration) {
	if !c.smOn || c.sinceReq == 0 {
		return false, 0
	}
	if c.sinceReq >= cfg.AckEvery && c.aRecv == c.rSent {
		return true, 0
	}
	due := c.uncovered + int64(cfg.AckDelay)
	if now >= due {
		return true, 0
	}
	return false, time.Duration(due - now)
}
