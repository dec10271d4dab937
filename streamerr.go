package xmpptrack

import (
	"fmt"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// policyViolated ends the stream-management session after the server closed
// the stream with a policy-violation error: the messages it had not
// acknowledged become Error with that reason and are not re-sent. Re-sending
// would likely break the same rule again (a spam filter, a rate or size
// limit); the application decides. Other stream errors are connection
// losses: the stream is resumed or its messages re-sent.
func (c *Client) policyViolated(se stream.Error) {
	text := ""
	if len(se.Text) > 0 {
		text = se.Text[0].Value
	}
	de := stanza.Classify(xstanza.Error{
		Type:      xstanza.Modify,
		Condition: xstanza.PolicyViolation,
		Text:      map[string]string{"": text},
	})
	err := fmt.Errorf("xmpptrack: the server closed the stream: %w: %w", se, de)
	c.log.Warn("xmpptrack: stream closed for a policy violation; unacknowledged messages failed", "text", text)
	c.failWith.Store(&err)
	c.sm.Abandon() // OnLost, on this goroutine, for every unacknowledged stanza
	c.failWith.Store(nil)
}

// lostMessage reports a message that stream management gave up on: Aborted,
// or Error during policyViolated.
func (c *Client) lostMessage(to, id string) {
	if err := c.failWith.Load(); err != nil {
		c.reg.ErrorReply(jid.JID{}, id, &tracking.Response{Err: *err})
		return
	}
	c.reg.Lost(bareOf(to), id)
}
