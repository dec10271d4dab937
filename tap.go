package xmpptrack

import (
	"encoding/xml"
	"errors"
	"io"
	"sync/atomic"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// maxBufferedTokens bounds what the tap reads of one message or presence
// it observes; a larger stanza is passed on whole but without being observed
// (a real message needs far fewer tokens).
const maxBufferedTokens = 4096

// errOversized stops ParseMessage at maxBufferedTokens.
var errOversized = errors.New("xmpptrack: oversized stanza")

// tap returns the handler that observes every incoming stanza without
// stealing any: it reads each message once, turns what it proves into tracker
// evidence, queues receipt answers, and hands the stanza, unchanged, to the
// application's handler. It runs on the Serve goroutine: nothing here may
// block or send.
//
// Per message it costs little: without an application handler a message is
// parsed straight from the stream, copying nothing; with one, its tokens go
// to a buffer that is reused from stanza to stanza (tokbuf). A Parser
// remembers the last few addresses, so a stream of messages between the
// same parties runs the PRECIS rules once, not once per message.
func (c *Client) tap(app xmpp.Handler) xmpp.Handler {
	own := &tapState{c: c, app: app}
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		// Serve calls a handler for one stanza at a time, and the client
		// serves one session at a time; should two calls ever overlap, the
		// second gets state of its own rather than share the buffer.
		s := own
		if !s.busy.CompareAndSwap(false, true) {
			s = &tapState{c: c, app: app}
		}
		defer s.busy.Store(false)
		switch start.Name.Local {
		case "message":
			return s.message(t, start)
		case "presence":
			return s.presence(t, start)
		case "iq":
			if c.carbonsAnswer(start) {
				return nil
			}
			return s.iq(t, start)
		}
		return pass(app, t, start)
	})
}

// tapState is what the tap keeps from stanza to stanza.
type tapState struct {
	c      *Client
	app    xmpp.Handler
	busy   atomic.Bool
	parser stanza.Parser
	buf    tokbuf.Buffer // the current stanza's tokens; emptied after each
	lr     limitReader
}

// message observes a message and passes it on.
func (s *tapState) message(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	c := s.c
	if s.app == nil {
		// Nobody reads the message after us: parse it from the stream.
		lr := &s.lr
		*lr = limitReader{r: t, n: maxBufferedTokens - 1}
		ev, err := s.parser.ParseMessage(*start, lr)
		lr.r = nil
		switch {
		case lr.err != nil:
			return lr.err
		case lr.over:
			c.log.Debug("xmpptrack: oversized message ignored by tracking", "tokens", maxBufferedTokens)
		case err != nil:
			c.log.Debug("xmpptrack: unparsable message ignored by tracking", "err", err)
		default:
			s.observe(&ev)
		}
		return nil
	}
	b := &s.buf
	defer b.Reset()
	complete, err := b.ReadFrom(t, maxBufferedTokens)
	if err != nil {
		return err
	}
	if !complete {
		c.log.Debug("xmpptrack: oversized message ignored by tracking", "tokens", b.Len())
		return passRest(s.app, b, t, start)
	}
	if ev, err := s.parser.ParseMessage(*start, b); err == nil {
		if consumed := s.observe(&ev); consumed {
			return nil
		}
	} else {
		c.log.Debug("xmpptrack: unparsable message ignored by tracking", "err", err)
	}
	b.Rewind()
	return pass(s.app, struct {
		xml.TokenReader
		xmlstream.Encoder
	}{b, t}, start)
}

// observe feeds a parsed message to tracking and to the observers. It
// reports whether the message is consumed: a forged carbon, or one an
// observer took.
func (s *tapState) observe(ev *stanza.Evidence) (consumed bool) {
	if drop := s.c.observe(ev); drop {
		return true
	}
	for _, o := range s.c.obs.get() {
		if o.Message != nil && o.Message(ev) {
			return true
		}
	}
	return false
}

// presence shows a presence to the observers that want presences, then
// passes it on.
func (s *tapState) presence(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	obs := s.c.obs.get()
	want := false
	for _, o := range obs {
		want = want || o.Presence != nil
	}
	if !want {
		return pass(s.app, t, start)
	}
	b := &s.buf
	defer b.Reset()
	complete, err := b.ReadFrom(t, maxBufferedTokens)
	if err != nil {
		return err
	}
	if !complete {
		return passRest(s.app, b, t, start)
	}
	p, err := xstanza.NewPresence(*start)
	if err == nil {
		for _, o := range obs {
			if o.Presence != nil {
				b.Rewind()
				o.Presence(p, b)
			}
		}
	}
	b.Rewind()
	return pass(s.app, struct {
		xml.TokenReader
		xmlstream.Encoder
	}{b, t}, start)
}

// iq shows an IQ result or error to the observers that want IQs; the
// first one that takes it consumes it, else it is passed on.
func (s *tapState) iq(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	iq, err := xstanza.NewIQ(*start)
	if err != nil || iq.Type != xstanza.ResultIQ && iq.Type != xstanza.ErrorIQ {
		return pass(s.app, t, start)
	}
	obs := s.c.obs.get()
	want := false
	for _, o := range obs {
		want = want || o.IQ != nil
	}
	if !want {
		return pass(s.app, t, start)
	}
	b := &s.buf
	defer b.Reset()
	complete, err := b.ReadFrom(t, maxBufferedTokens)
	if err != nil {
		return err
	}
	if complete {
		for _, o := range obs {
			b.Rewind()
			if o.IQ != nil && o.IQ(iq, b) {
				return nil
			}
		}
	}
	return passRest(s.app, b, t, start)
}

func pass(app xmpp.Handler, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if app == nil {
		return nil
	}
	return app.HandleXMPP(t, start)
}

// passRest passes a stanza that was read only in part (the buffered tokens
// in b, the rest still in t) on to the application whole.
func passRest(app xmpp.Handler, b *tokbuf.Buffer, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	b.Rewind()
	return pass(app, struct {
		xml.TokenReader
		xmlstream.Encoder
	}{xmlstream.MultiReader(b, t), t}, start)
}

// limitReader reads at most n tokens from r, then fails with errOversized.
// It keeps the first error of r other than io.EOF, so that the caller can
// tell a broken stream from a message that does not parse.
type limitReader struct {
	r    xml.TokenReader
	n    int
	over bool
	err  error
}

func (l *limitReader) Token() (xml.Token, error) {
	if l.n <= 0 {
		l.over = true
		return nil, errOversized
	}
	tok, err := l.r.Token()
	if tok != nil {
		l.n--
	}
	if err != nil && err != io.EOF && l.err == nil {
		l.err = err
	}
	return tok, err
}

// observe applies the correlation and security rules to one parsed message
// and feeds the registry. It reports whether the stanza must be dropped
// whole (a forged carbon).
func (c *Client) observe(ev *stanza.Evidence) (drop bool) {
	// mellium reports our own bare JID as an empty from; a stanza without
	// from comes from our server on behalf of the account. (A JID equal to
	// its bare JID has no resourcepart; the test allocates nothing.)
	bare := ev.From.Bare().String()
	fromAccount := ev.From.Equal(jid.JID{}) || bare == c.self && ev.From.Equal(ev.From.Bare())
	fromSelf := fromAccount || bare == c.self
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
			c.evidence(ev.Forwarded, ev.Forwarded.From.Bare().String(), false)
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
	c.evidence(ev, bare, true)
	return false
}

// evidence handles a message from a peer: receipts, markers, and the
// message's own position for later markers. conv is the bare JID of
// ev.From; direct is false for carbons.
func (c *Client) evidence(ev *stanza.Evidence, conv string, direct bool) {
	if ev.Type == xstanza.ErrorMessage || ev.Type == xstanza.GroupChatMessage {
		return // group chat evidence belongs to the muc package
	}
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

// carbonsAnswer reports whether start is the server's answer to the
// carbons <enable/> of this session (see enableCarbons), and logs a refusal.
func (c *Client) carbonsAnswer(start *xml.StartElement) bool {
	var id, typ string
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "id":
			id = a.Value
		case "type":
			typ = a.Value
		}
	}
	want := c.carbonsID.Load()
	if want == nil || id != *want || typ != string(xstanza.ResultIQ) && typ != string(xstanza.ErrorIQ) {
		return false
	}
	c.carbonsID.Store(nil)
	if typ == string(xstanza.ErrorIQ) {
		c.log.Debug("xmpptrack: carbons not enabled: the server answered with an error")
	}
	return true
}
