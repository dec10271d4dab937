package xmpptrack

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// errRecordedError is the reason of a tracker re-loaded in the Error
// state: the error reply itself is in the store's history.
var errRecordedError = errors.New("xmpptrack: an error reply was recorded before the restart (see Client.Status)")

// reload takes back what a previous process left in the store for this
// account and resource, once the first session is up:
//
//   - a message whose tracking window ended while no process ran ends now,
//     stamped with its deadline: TIMED_OUT if it had no proof of delivery
//     to the recipient, its state kept otherwise;
//   - every other unsettled message gets its tracker again, in its stored
//     state and with the rest of its window, so that evidence arriving
//     later still counts (Client.Tracker returns it); its move to the
//     stored state is neither recorded again nor reported to
//     Config.OnStateChange, which saw it before the restart;
//   - a message still IN_TRANSIT (our server never acknowledged it) is
//     handled as after a failed stream resumption: re-sent, with its id,
//     under the Resend policy, reported ABORTED under ReportLost. The
//     previous stream is not resumed, so a message the server had taken
//     without acknowledging it yet reaches the recipient twice.
//
// It reports how many trackers it re-registered and re-sent.
func (c *Client) reload(ctx context.Context) (tracked, resent int, err error) {
	now := time.Now()
	type resend struct {
		id, conv string
		raw      []byte
	}
	var (
		ended   []store.Change
		resends []resend
		lost    []resend
	)
	err = c.dur.st.Pending(ctx, c.dur.owner, func(m store.Message) error {
		conv := registry.ConvOf(m.To)
		if !m.Deadline.IsZero() && !m.Deadline.After(now) {
			ended = append(ended, store.Change{ID: m.ID, State: tracking.TimedOut, At: m.Deadline})
			return nil
		}
		window := time.Duration(-1)
		if !m.Deadline.IsZero() {
			window = m.Deadline.Sub(now)
		}
		t, err := c.reg.TryTrack(conv, m.ID, registry.TrackOptions{Window: window, Thread: m.Thread, Room: m.Room})
		if err != nil {
			c.log.Warn("xmpptrack: a stored message cannot be tracked again", "id", m.ID, "err", err)
			return nil
		}
		tracked++
		switch m.State {
		case tracking.InTransit:
			r := resend{id: m.ID, conv: conv, raw: m.Raw}
			if c.cfg.StreamManagement.Policy == sm.ReportLost || len(m.Raw) == 0 {
				lost = append(lost, r)
			} else {
				resends = append(resends, r)
			}
		case tracking.Error:
			c.dur.restoring(m.ID, m.State)
			registry.Advance(t, m.State, &tracking.Response{Err: errRecordedError})
		default:
			c.dur.restoring(m.ID, m.State)
			registry.Advance(t, m.State, nil)
		}
		return nil
	})
	if err != nil {
		return tracked, 0, fmt.Errorf("xmpptrack: reading the store's pending messages: %w", err)
	}
	if len(ended) > 0 {
		if err := c.dur.st.Commit(ctx, &store.Batch{Changes: ended}); err != nil {
			return tracked, 0, fmt.Errorf("xmpptrack: ending the windows that ended while no process ran: %w", err)
		}
	}
	for _, r := range lost {
		c.reg.Lost(r.conv, r.id)
	}
	for _, r := range resends {
		if err := c.sm.Reserve(ctx); err != nil {
			return tracked, resent, err
		}
		if err := c.writeRaw(ctx, r.raw); err != nil {
			return tracked, resent, fmt.Errorf("xmpptrack: re-sending stored message %s: %w", r.id, err)
		}
		resent++
	}
	return tracked, resent, nil
}

// writeRaw writes a stored stanza, again on the next connection when a
// write fails (see Send).
func (c *Client) writeRaw(ctx context.Context, raw []byte) error {
	var stale *xmpp.Session
	for attempt := 1; ; attempt++ {
		s, err := c.waitSession(ctx, stale, true)
		if err != nil {
			return err
		}
		_, err = wire.Write(ctx, s, rawTokens(raw))
		if err == nil || ctx.Err() != nil || attempt == maxWrites {
			return err
		}
		stale = s
	}
}

// rawTokens reads a stored stanza back as tokens, without namespace
// processing: the encoder writes them as they were.
func rawTokens(raw []byte) xml.TokenReader {
	d := xml.NewDecoder(bytes.NewReader(raw))
	return xmlstream.ReaderFunc(func() (xml.Token, error) {
		tok, err := d.RawToken()
		if err == io.EOF {
			return nil, io.EOF
		}
		return xml.CopyToken(tok), err
	})
}
