package xmpptrack

import (
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// refused turns a message the server refused with a policy-violation
// stream error into Error. Stream management only reports a message when
// the refusal can be pinned on it: it was re-sent alone on a new stream
// after a first policy violation and refused again (see the sm package,
// "Policy violations"). Other unacknowledged messages of a stream closed
// for a policy violation are re-sent, like those of any stream that cannot
// be resumed.
func (c *Client) refused(next func(sm.Stanza, error)) func(sm.Stanza, error) {
	return func(s sm.Stanza, err error) {
		if s.Name == "message" {
			c.log.Warn("xmpptrack: the server refused a message with a policy-violation stream error", "id", s.ID, "err", err)
			c.reg.ErrorReply(jid.JID{}, s.ID, &tracking.Response{Err: refusalError(err)})
		}
		if next != nil {
			next(s, err)
		}
	}
}

// refusalError is the tracker's error for a message refused by a
// policy-violation stream error: it matches the stream error and
// stanza.ErrPermissionDenied, and carries the server's text.
func refusalError(err error) error {
	var se stream.Error
	errors.As(err, &se)
	text := ""
	if len(se.Text) > 0 {
		text = se.Text[0].Value
	}
	de := stanza.Classify(xstanza.Error{
		Type:      xstanza.Modify,
		Condition: xstanza.PolicyViolation,
		Text:      map[string]string{"": text},
	})
	return fmt.Errorf("xmpptrack: the server closed the stream: %w: %w", err, de)
}

// lostMessage reports a message that stream management gave up on.
func (c *Client) lostMessage(to, id string) {
	c.reg.Lost(registry.ConvOf(to), id)
}
