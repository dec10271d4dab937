package xmpptrack

import (
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"sync/atomic"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// maxBufferedTokens bounds what the tap reads of one message before it
// parses it for tracking; a larger stanza is not tracked nor handed to
// OnMessage (a real message needs far fewer tokens), but still reaches
// Config.Handler whole.
const maxBufferedTokens = 4096

// errOversized stops ParseMessage at maxBufferedTokens.
var errOversized = errors.New("xmpptrack: oversized stanza")

// tap returns the handler that the client serves each session with. It runs
// on the goroutine that reads the stream and never runs application code:
// it reads each stanza once, drops stanzas whose addresses do not parse,
// turns what a message proves into tracker evidence, queues receipt
// answers, shows messages and presences to the observers, and queues
// what the application gets (Config.OnMessage, Config.Handler) for the
// goroutine of the callbacks.
//
// Per message it costs little: with neither OnMessage nor Handler a message
// is parsed straight from the stream, copying nothing; otherwise its tokens
// go to a buffer reused from stanza to stanza (tokbuf), and only what is
// handed to the application is copied. A Parser remembers the last few
// addresses, so a stream of messages between the same parties runs the
// PRECIS rules once, not once per message.
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
		if isStanza(start.Name) {
			stripForeign(start)
			if bad := s.badAddress(start); bad != "" {
				return s.dropUnparsable(t, start, bad)
			}
		}
		switch start.Name.Local {
		case "message":
			if c.batching.Load() {
				// Evidence read ahead goes to the callbacks with one
				// wake-up when the reader needs more input (readIdle).
				c.reg.Hold()
			}
			if q := c.archiveResult(start); q != nil {
				return s.archiveMessage(q, t, start)
			}
			return s.message(t, start)
		case "presence":
			return s.presence(t, start)
		case "iq":
			if c.carbonsAnswer(start) || c.archiveAnswer(t, start) {
				return nil
			}
			return s.iq(t, start)
		}
		return s.handOff(t, start, t)
	})
}

// tapState is what the tap keeps from stanza to stanza.
type tapState struct {
	c      *Client
	app    xmpp.Handler
	busy   atomic.Bool
	parser stanza.Parser
	addrs  [4]string     // addresses that jid.Parse accepted lately
	next   uint8         // next slot of addrs
	buf    tokbuf.Buffer // the current stanza's tokens; emptied after each
	arch   tokbuf.Buffer // a message read while an archive query is in flight (archiveMessage)
	lr     limitReader
	peers  peerCache
	// ev is the current message's evidence, kept here rather than
	// allocated per stanza: observers and the registry read it during the
	// call and keep none of it (what they keep, they copy). Cleared after
	// each message.
	ev stanza.Evidence
}

// clearEvidence drops the current message's evidence, so that the tap
// keeps nothing of it alive.
func (s *tapState) clearEvidence() { s.ev = stanza.Evidence{} }

// peerCache remembers the conversation keys of the last few senders, so
// that a stream of receipts and markers from the same peers formats their
// addresses once, not three times per stanza. A nil cache remembers
// nothing.
type peerCache struct {
	from [2]jid.JID
	keys [2]registry.Peer
	next uint8
}

// of returns the conversation keys of the sender from.
func (pc *peerCache) of(from jid.JID) registry.Peer {
	if pc == nil {
		return registry.PeerOf(from)
	}
	for i := range pc.from {
		// Equal compares the bytes, and tells apart the zero JID (our own
		// server or account) from a JID with a different split.
		if pc.keys[i].Bare != "" && pc.from[i].Equal(from) {
			return pc.keys[i]
		}
	}
	p := registry.PeerOf(from)
	i := pc.next % uint8(len(pc.from))
	pc.from[i], pc.keys[i] = from, p
	pc.next++
	return p
}

func isStanza(n xml.Name) bool {
	return (n.Local == "message" || n.Local == "presence" || n.Local == "iq") && isClient(n.Space)
}

// stripForeign removes from a stanza's start element the attributes of
// other namespaces named like its own: from, to, id, type. They are no
// address, id or type of the stanza, yet mellium reads each of these by
// local name alone (the first one wins: a:from='@@' before from made it
// refuse the address of an IQ it answered, and end the session), and so
// would an application that does the same. Servers relay such attributes
// from any sender. Nothing the stanza means is lost.
func stripForeign(start *xml.StartElement) {
	if slices.ContainsFunc(start.Attr, foreignNamed) {
		start.Attr = slices.DeleteFunc(slices.Clone(start.Attr), foreignNamed) // the decoder's slice stays
	}
}

// foreignNamed reports an attribute of another namespace named like a
// stanza's own (see stripForeign). Namespace declarations stay.
func foreignNamed(a xml.Attr) bool {
	if a.Name.Space == "" || a.Name.Space == "xmlns" {
		return false
	}
	switch a.Name.Local {
	case "from", "to", "id", "type":
		return true
	}
	return false
}

// badAddress returns the from or to attribute of a stanza that jid.Parse
// refuses, or "". Such addresses exist: a server's rules for addresses
// (stringprep, or another PRECIS version) may accept what mellium's
// refuses, e.g. a resource starting with U+1100.
func (s *tapState) badAddress(start *xml.StartElement) string {
	for _, a := range start.Attr {
		if a.Name.Space != "" || a.Name.Local != "from" && a.Name.Local != "to" || a.Value == "" {
			continue
		}
		if !s.addrOK(a.Value) {
			return a.Value
		}
	}
	return ""
}

// addrOK reports whether jid.Parse accepts v, remembering the last few
// addresses it accepted.
func (s *tapState) addrOK(v string) bool {
	for _, a := range s.addrs {
		if a == v {
			return true
		}
	}
	if _, err := jid.Parse(v); err != nil {
		return false
	}
	s.addrs[s.next%uint8(len(s.addrs))] = v
	s.next++
	return true
}

// dropUnparsable drops a stanza with an address that does not parse: it is
// counted (Stats.Dropped) and logged at debug level, and the stream goes
// on. Stream management counts it as handled, so the server never sends it
// again. An IQ request gets an error reply built from the raw address:
// mellium would otherwise answer it itself and fail on parsing the address,
// which would end the session.
func (s *tapState) dropUnparsable(t xmlstream.TokenReadEncoder, start *xml.StartElement, bad string) error {
	c := s.c
	c.dropped.Add(1)
	c.log.Debug("xmpptrack: dropped a stanza with an address that does not parse",
		"stanza", start.Name.Local, "address", bad)
	if start.Name.Local != "iq" {
		return nil
	}
	var id, typ, from string
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "id":
			id = a.Value
		case "type":
			typ = a.Value
		case "from":
			from = a.Value
		}
	}
	if typ != string(xstanza.GetIQ) && typ != string(xstanza.SetIQ) {
		return nil
	}
	attrs := []xml.Attr{{Name: xml.Name{Local: "type"}, Value: string(xstanza.ErrorIQ)}, {Name: xml.Name{Local: "id"}, Value: id}}
	if from != "" {
		attrs = append(attrs, xml.Attr{Name: xml.Name{Local: "to"}, Value: from})
	}
	c.reg.Release() // the answer's write may wait: nothing applied is held back meanwhile
	_, err := xmlstream.Copy(t, xmlstream.Wrap(
		xstanza.Error{Type: xstanza.Cancel, Condition: xstanza.ServiceUnavailable}.TokenReader(),
		xml.StartElement{Name: xml.Name{Local: "iq"}, Attr: attrs}))
	return err
}

// message observes a message and hands it on: to OnMessage when it has
// content, else to the application's Handler.
func (s *tapState) message(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	c := s.c
	if s.app == nil && c.cfg.OnMessage == nil {
		// Nobody reads the message after us: parse it from the stream.
		lr := &s.lr
		*lr = limitReader{r: t, n: maxBufferedTokens - 1}
		ev := &s.ev
		defer s.clearEvidence()
		var err error
		*ev, err = s.parser.ParseMessage(*start, lr)
		lr.r = nil
		switch {
		case lr.err != nil:
			return lr.err
		case lr.over:
			c.log.Debug("xmpptrack: oversized message ignored by tracking", "tokens", maxBufferedTokens)
		case err != nil:
			c.log.Debug("xmpptrack: unparsable message ignored by tracking", "err", err)
		default:
			s.observe(ev)
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
		return s.handOff(xmlstream.MultiReader(b, t), start, t)
	}
	ev := &s.ev
	defer s.clearEvidence()
	*ev, err = s.parser.ParseMessage(*start, b)
	if err != nil {
		c.log.Debug("xmpptrack: unparsable message ignored by tracking", "err", err)
		b.Rewind()
		return s.handOff(b, start, t)
	}
	if consumed := s.observe(ev); consumed {
		return nil
	}
	if on := c.cfg.OnMessage; on != nil && ev.Type != xstanza.ErrorMessage && ev.Carbon == stanza.CarbonNone {
		b.Rewind()
		if m := newIncoming(ev, b); m.hasContent() {
			if m.markable && !c.cfg.NoMarkers {
				c.toRemember(ev, m)
			}
			if !c.ev.pushStanza(func() { c.deliver(on, m) }, c.ctx.Done()) && m.arrival != 0 {
				c.rcp.settle(m.key, m.arrival)
			}
			return nil
		}
	}
	b.Rewind()
	return s.handOff(b, start, t)
}

// deliver runs OnMessage for m, on the goroutine of the callbacks.
func (c *Client) deliver(on func(*Client, *Incoming), m *Incoming) {
	if m.key != "" {
		// MarkDisplayed marks what the application has seen, not what the
		// reader has read ahead of it.
		c.rcp.remember(m.From, m.key, m.sender, m.Type, m.ID, m.Thread, m.arrival)
	}
	on(c, m)
}

// toRemember prepares m, a markable message parsed as ev, to be remembered
// by deliver, on the reading goroutine: its sender's kind as the rooms are
// now, not when OnMessage runs, its key (From's string, made once here),
// and, from a full JID, its number (see recipient.arrived). A group chat
// message, ours, or one with no sender is not remembered (key stays "").
func (c *Client) toRemember(ev *stanza.Evidence, m *Incoming) {
	if m.Type == xstanza.GroupChatMessage {
		return
	}
	full := m.From.String()
	bare := bareOf(full)
	if full == "" || bare == c.self {
		return
	}
	m.key, m.sender = full, c.senderOf(ev)
	if len(bare) < len(full) { // a full JID
		m.arrival = c.rcp.arrived(full)
	}
}

// observe feeds a parsed message to tracking and to the observers. It
// reports whether the message is consumed: a forged carbon, or one an
// observer took.
func (s *tapState) observe(ev *stanza.Evidence) (consumed bool) {
	if drop := s.c.observe(ev, &s.peers); drop {
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
// hands it to the application's Handler.
func (s *tapState) presence(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	s.c.rcp.occupantGone(start)
	obs := s.c.obs.get()
	want := false
	for _, o := range obs {
		want = want || o.Presence != nil
	}
	if !want {
		return s.handOff(t, start, t)
	}
	b := &s.buf
	defer b.Reset()
	complete, err := b.ReadFrom(t, maxBufferedTokens)
	if err != nil {
		return err
	}
	if !complete {
		return s.handOff(xmlstream.MultiReader(b, t), start, t)
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
	return s.handOff(b, start, t)
}

// iq shows an IQ result or error to the observers that want IQs; the
// first one that takes it consumes it, else it is handed on.
func (s *tapState) iq(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	iq, err := xstanza.NewIQ(*start)
	if err != nil || iq.Type != xstanza.ResultIQ && iq.Type != xstanza.ErrorIQ {
		return s.handOff(t, start, t)
	}
	obs := s.c.obs.get()
	want := false
	for _, o := range obs {
		want = want || o.IQ != nil
	}
	if !want {
		return s.handOff(t, start, t)
	}
	b := &s.buf
	defer b.Reset()
	complete, err := b.ReadFrom(t, maxBufferedTokens)
	if err != nil {
		return err
	}
	if !complete {
		return s.handOff(xmlstream.MultiReader(b, t), start, t)
	}
	for _, o := range obs {
		b.Rewind()
		if o.IQ != nil && o.IQ(iq, b) {
			return nil
		}
	}
	b.Rewind()
	return s.handOff(b, start, t)
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
func (c *Client) observe(ev *stanza.Evidence, peers *peerCache) (drop bool) {
	// mellium reports our own bare JID as an empty from; a stanza without
	// from comes from our server on behalf of the account. (A JID equal to
	// its bare JID has no resourcepart; the test allocates nothing.)
	p := peers.of(ev.From)
	bare := p.Bare
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
			c.evidence(ev.Forwarded, peers.of(ev.Forwarded.From), false)
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
	c.evidence(ev, p, true)
	return false
}

// evidence handles a message from a peer: receipts, markers, and the
// message's own position for later markers. p holds the conversation
// keys of ev.From; direct is false for carbons.
func (c *Client) evidence(ev *stanza.Evidence, p registry.Peer, direct bool) {
	if ev.Type == xstanza.ErrorMessage || ev.Type == xstanza.GroupChatMessage {
		return // group chat evidence belongs to the muc package
	}
	if p.Bare == c.self || p.Bare == "" {
		return
	}
	if ev.Receipt != "" {
		c.reg.DeliveredBy(p, ev.Receipt, &tracking.Response{From: ev.From, ID: ev.ID})
	}
	switch ev.Marker.Type {
	case stanza.MarkerReceived:
		if ev.Marker.ID != "" {
			c.reg.DeliveredBy(p, ev.Marker.ID, &tracking.Response{From: ev.From, ID: ev.ID})
		}
	case stanza.MarkerDisplayed, stanza.MarkerAcknowledged:
		if ev.Marker.ID != "" {
			c.reg.DisplayedBy(p, ev.Marker.ID, ev.Thread, &tracking.Response{From: ev.From, ID: ev.ID})
		}
	}
	if ev.Receipt == "" && ev.Marker.ID == "" && ev.ID != "" {
		c.reg.IncomingBy(p, ev.ID)
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
