package xmpptrack

import (
	"encoding/xml"
	"io"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// maxBufferedTokens bounds what the tap buffers of one stanza; a larger
// stanza is passed on whole but without being observed (a real message needs
// far fewer tokens).
const maxBufferedTokens = 4096

// tap returns the handler that observes every incoming stanza without
// stealing any: it reads each message once, turns what it proves into tracker
// evidence, queues receipt answers, and hands the stanza, unchanged, to the
// application's handler. It runs on the Serve goroutine: nothing here may
// block or send.
func (c *Client) tap(app xmpp.Handler) xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		switch start.Name.Local {
		case "message":
		case "presence":
			return c.presence(app, t, start)
		default:
			return pass(app, t, start)
		}
		toks, complete, err := readTokens(t)
		if err != nil {
			return err
		}
		rp := &replay{toks: toks}
		if !complete {
			c.log.Debug("xmpptrack: oversized message ignored by tracking", "tokens", len(toks))
			return passRest(app, rp, t, start)
		}
		if ev, err := stanza.ParseMessage(*start, rp); err == nil {
			if drop := c.observe(&ev); drop {
				return nil
			}
			for _, o := range c.obs.get() {
				if o.Message != nil && o.Message(&ev) {
					return nil
				}
			}
		} else {
			c.log.Debug("xmpptrack: unparsable message ignored by tracking", "err", err)
		}
		rp.pos = 0
		return pass(app, struct {
			xml.TokenReader
			xmlstream.Encoder
		}{rp, t}, start)
	})
}

// presence shows a presence to the observers that want presences, then
// passes it on.
func (c *Client) presence(app xmpp.Handler, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	obs := c.obs.get()
	want := false
	for _, o := range obs {
		want = want || o.Presence != nil
	}
	if !want {
		return pass(app, t, start)
	}
	toks, complete, err := readTokens(t)
	if err != nil {
		return err
	}
	rp := &replay{toks: toks}
	if !complete {
		return passRest(app, rp, t, start)
	}
	p, err := xstanza.NewPresence(*start)
	if err == nil {
		for _, o := range obs {
			if o.Presence != nil {
				rp.pos = 0
				o.Presence(p, rp)
			}
		}
	}
	rp.pos = 0
	return pass(app, struct {
		xml.TokenReader
		xmlstream.Encoder
	}{rp, t}, start)
}

func pass(app xmpp.Handler, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if app == nil {
		return nil
	}
	return app.HandleXMPP(t, start)
}

// passRest passes a stanza that was read only in part (the buffered tokens
// in rp, the rest still in t) on to the application whole.
func passRest(app xmpp.Handler, rp *replay, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	return pass(app, struct {
		xml.TokenReader
		xmlstream.Encoder
	}{xmlstream.MultiReader(rp, t), t}, start)
}

// readTokens reads the rest of one stanza, copying the tokens. complete is
// false when the stanza has more than maxBufferedTokens tokens; the rest is
// then still unread in r.
func readTokens(r xml.TokenReader) (toks []xml.Token, complete bool, err error) {
	for len(toks) < maxBufferedTokens {
		tok, err := r.Token()
		if tok != nil {
			toks = append(toks, xml.CopyToken(tok))
		}
		if err == io.EOF {
			return toks, true, nil
		}
		if err != nil {
			return toks, false, err
		}
	}
	return toks, false, nil
}

// replay reads buffered tokens.
type replay struct {
	toks []xml.Token
	pos  int
}

func (r *replay) Token() (xml.Token, error) {
	if r.pos >= len(r.toks) {
		return nil, io.EOF
	}
	r.pos++
	return r.toks[r.pos-1], nil
}

// observe applies the correlation and security rules to one parsed message
// and feeds the registry. It reports whether the stanza must be dropped
// whole (a forged carbon).
func (c *Client) observe(ev *stanza.Evidence) (drop bool) {
	// mellium reports our own bare JID as an empty from; a stanza without
	// from comes from our server on behalf of the account.
	fromAccount := ev.From.Equal(jid.JID{}) || ev.From.Resourcepart() == "" && ev.From.String() == c.self
	fromSelf := fromAccount || ev.From.Bare().String() == c.self
	if ev.Carbon != stanza.CarbonNone {
		if !fromAccount {
			// Only our own account's bare JID may send carbons (XEP-0280
			// §11), not even another of our resources.
			c.log.Debug("xmpptrack: dropped a carbon not from our account", "from", ev.From.String())
			return true
		}
		if ev.Carbon == stanza.CarbonReceived && ev.Forwarded != nil {
			// A message to us that another of our devices got first: its
			// receipts and markers are evidence, checked like direct ones.
			c.evidence(ev.Forwarded, false)
		}
		// A sent carbon is our other device's outgoing message: a receipt or
		// marker in it is read-sync for incoming messages, never evidence.
		return false
	}
	if ev.Type == xstanza.ErrorMessage {
		c.reg.ErrorReply(ev.From, ev.ID, &tracking.Response{From: ev.From, ID: ev.ID, Err: deliveryError(ev.Error)})
		return false
	}
	if fromSelf {
		return false // our own account never proves delivery
	}
	c.evidence(ev, true)
	return false
}

// evidence handles a message from a peer: receipts, markers, and the
// message's own position for later markers. direct is false for carbons.
func (c *Client) evidence(ev *stanza.Evidence, direct bool) {
	if ev.Type == xstanza.ErrorMessage || ev.Type == xstanza.GroupChatMessage {
		return // group chat evidence belongs to the muc package
	}
	conv := ev.From.Bare().String()
	if conv == c.self || conv == "" {
		return
	}
	if ev.Receipt != "" {
		c.reg.Delivered(conv, ev.Receipt, &tracking.Response{From: ev.From, ID: ev.ID})
	}
	switch ev.Marker.Type {
	case stanza.MarkerReceived:
		if ev.Marker.ID != "" {
			c.reg.Delivered(conv, ev.Marker.ID, &tracking.Response{From: ev.From, ID: ev.ID})
		}
	case stanza.MarkerDisplayed, stanza.MarkerAcknowledged:
		if ev.Marker.ID != "" {
			c.reg.Displayed(conv, ev.Marker.ID, ev.Thread, &tracking.Response{From: ev.From, ID: ev.ID})
		}
	}
	if ev.Receipt == "" && ev.Marker.ID == "" && ev.ID != "" {
		c.reg.Incoming(conv, ev.ID)
		if direct {
			c.rcp.received(ev)
		}
	}
}
