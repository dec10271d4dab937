package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// errRecordedError is the reason of a tracker re-loaded in the Error
// state: the error reply itself is in the store's history.
var errRecordedError = errors.New("xmpptrack: an error reply was recorded before the restart (see Client.Status)")

// reload takes back what a previous process left in the store for this
// account and resource, before the first connection:
//
//   - a message whose tracking window ended while no process ran ends now,
//     stamped with its deadline: TIMED_OUT if it had no proof of delivery
//     to the recipient (reported to Config.OnStateChange, with a tracker
//     that is already settled), its state kept otherwise;
//   - every other unsettled message gets its tracker again, in its stored
//     state and with the rest of its window, so that evidence arriving
//     later still counts (Client.Tracker returns it); its move to the
//     stored state is neither recorded again nor reported to
//     Config.OnStateChange, which saw it before the restart;
//   - the stream-management state goes back into c.sm with every message
//     still IN_TRANSIT under the sequence number it had on the stream
//     (sm.State.Restore), so that the first connection resumes the
//     previous stream when the server still holds it: the server's
//     <resumed h> settles what it got (DELIVERED_TO_SERVER), the rest is
//     looked up in the account's archive and written again, with the
//     same ids, when not found there (see archive.go), and the server
//     replays the stanzas the application had not finished with. When the stream cannot be
//     resumed, the stream-management Policy applies to those messages, as
//     after any failed resumption: re-sent with their ids under Resend
//     (the server may have taken some without acknowledging them: they
//     reach the recipient twice), ABORTED under ReportLost.
func (c *Client) reload(ctx context.Context) error {
	now := time.Now()
	var res sm.Resumption
	sess, err := c.dur.st.Session(ctx, c.dur.owner)
	switch {
	case err == nil:
		res = sm.Resumption{ID: sess.ID, Location: sess.Location, Max: sess.Max,
			Handled: sess.Inbound, Sent: sess.Outbound, Acked: sess.Acked}
		res.JID, _ = jid.Parse(sess.JID)
		c.dur.last = sess
		c.dur.saved.Store(&sess)
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("xmpptrack: reading the store's stream-management state: %w", err)
	}
	var (
		ended    []store.Change
		expired  []store.Message // ended without proof: OnStateChange hears TIMED_OUT
		unacked  []sm.Stanza
		numbered []string // messages with a number on the stored stream
	)
	err = c.dur.st.Pending(ctx, c.dur.owner, func(m store.Message) error {
		// Every number the store keeps is of the stored stream: the
		// recorder voids (Seq 0) the others when it saves the state of a
		// new stream (see numbers.go). A message with a voided number was
		// written on an earlier stream: the server may have it, which no
		// h of this stream can tell (sm.Stanza.Ambiguous).
		voided := m.Written && m.Seq == 0
		m.Written = m.Written && m.Seq != 0
		if m.Written {
			numbered = append(numbered, m.ID)
		}
		conv := registry.ConvOf(m.To)
		if windowEnded(m, now) {
			ended = append(ended, store.Change{ID: m.ID, State: tracking.TimedOut, At: m.Deadline})
			if m.State == tracking.InTransit || m.State == tracking.DeliveredToServer {
				expired = append(expired, m)
			}
			return nil
		}
		// Tracked whatever Config.MaxPending (see trackStored). One that
		// cannot be tracked all the same (nothing but a broken store
		// makes that happen) still takes its place on the stream below:
		// dropped, its stored number would be given to the next stanza,
		// and an ack of that one would later read as the server's ack of
		// this message.
		t, err := c.trackStored(m, now)
		if err != nil {
			c.log.Error("xmpptrack: a stored message cannot be tracked again; it is sent again untracked", "id", m.ID, "err", err)
		}
		state := m.State
		if state == tracking.InTransit && res.ID != "" && m.Written && int32(m.Seq-res.Acked) <= 0 {
			// The server acknowledged it; the change was not recorded.
			state = tracking.DeliveredToServer
		}
		if state != tracking.InTransit && res.ID != "" && m.Written && int32(m.Seq-res.Acked) > 0 {
			// Settled otherwise (a receipt overtook the server's ack), yet
			// written under this number: it holds its place, so that the
			// count of stanzas written is right when it was the last one
			// (the server's <resumed h> would otherwise exceed it).
			unacked = append(unacked, sm.Stanza{Seq: m.Seq})
		}
		switch state {
		case tracking.InTransit:
			s := sm.Stanza{Name: "message", ID: m.ID, To: m.To, Raw: m.Raw, Sent: m.Created, Ambiguous: voided}
			if res.ID != "" && m.Written {
				s.Seq = m.Seq
			}
			if len(m.Raw) == 0 {
				c.reg.Lost(conv, m.ID)
				return nil
			}
			unacked = append(unacked, s)
		case tracking.Error:
			if t == nil {
				return nil
			}
			c.dur.restoring(m.ID, state, false)
			registry.Advance(t, state, &tracking.Response{Err: errRecordedError})
		default:
			if t == nil {
				return nil
			}
			if state == m.State { // else new: the server's ack, to record
				c.dur.restoring(m.ID, state, false)
			}
			registry.Advance(t, state, nil)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("xmpptrack: reading the store's pending messages: %w", err)
	}
	c.dur.nums.restored(res.ID, numbered)
	if len(ended) > 0 {
		if err := c.dur.st.Commit(ctx, &store.Batch{Changes: ended}); err != nil && !errors.Is(err, store.ErrCursorsUnknown) {
			return fmt.Errorf("xmpptrack: ending the windows that ended while no process ran: %w", err)
		}
	}
	for _, m := range expired {
		if err := c.expire(m, true); err != nil {
			c.log.Warn("xmpptrack: the TIMED_OUT of a stored message cannot be reported", "id", m.ID, "err", err)
		}
	}
	if err := c.sm.Restore(res, unacked); err != nil {
		return fmt.Errorf("xmpptrack: restoring the stream-management state: %w", err)
	}
	c.log.Debug("xmpptrack: re-loaded from the store", "unacked", len(unacked), "resumable", res.ID != "")
	return nil
}

// windowEnded reports whether a stored message's tracking window ended by
// now.
func windowEnded(m store.Message, now time.Time) bool {
	return !m.Deadline.IsZero() && !m.Deadline.After(now)
}

// trackStored tracks a stored message again, in IN_TRANSIT, for the rest
// of its window, whatever Config.MaxPending: the bound admits new messages,
// and one already on its way must be followed (its evidence, its window, its
// place on the stream). Send waits while the re-loaded messages keep the
// pending ones at or above the bound.
func (c *Client) trackStored(m store.Message, now time.Time) (*tracking.MessageTracker, error) {
	window := time.Duration(-1)
	if !m.Deadline.IsZero() {
		window = m.Deadline.Sub(now)
	}
	return c.reg.Reinstate(registry.ConvOf(m.To), m.ID, registry.TrackOptions{Window: window, Thread: m.Thread, Room: m.Room})
}

// expire tells Config.OnStateChange that a stored message whose window
// ended without proof of delivery is TIMED_OUT, which the application has
// not heard of: a tracker that ends at once (the store has the change,
// stamped with the deadline, committed by the caller). It needs a pending
// slot for that moment: at the MaxPending bound it fails with
// tracking.ErrTooManyPending, unless anyway (Dial's re-load, which has no
// later round to report it in; see trackStored).
func (c *Client) expire(m store.Message, anyway bool) error {
	track := c.reg.TryTrack
	if anyway {
		track = c.reg.Reinstate
	}
	t, err := track(registry.ConvOf(m.To), m.ID, registry.TrackOptions{Window: -1, Thread: m.Thread, Room: m.Room})
	if err != nil {
		return err
	}
	if m.State != tracking.InTransit {
		c.dur.restoring(m.ID, m.State, false)
		registry.Advance(t, m.State, nil)
	}
	c.dur.restoring(m.ID, tracking.TimedOut, true)
	registry.Advance(t, tracking.TimedOut, nil)
	return nil
}
