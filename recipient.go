package xmpptrack

import (
	"encoding/xml"
	"sync"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// Bounds of the recipient side, so that peers cannot grow our memory.
const (
	outboxSize  = 1024   // receipts and markers waiting to be written
	maxMarkable = 10_000 // conversations whose newest markable message we remember
)

// recipient is the receiving half: it answers receipt requests and sends
// displayed markers on request. Answers are written by one goroutine, never by
// the Serve goroutine that observes the requests.
type recipient struct {
	c   *Client
	out chan answer

	mu       sync.Mutex
	markable map[string]answer // newest markable message per peer (bare JID)
}

// answer is a receipt or a marker to send.
type answer struct {
	to     jid.JID
	typ    xstanza.MessageType
	ref    string // id of the message it refers to
	thread string
	marker bool // a displayed marker instead of a receipt
}

func newRecipient(c *Client) *recipient {
	return &recipient{c: c, out: make(chan answer, outboxSize), markable: make(map[string]answer)}
}

// received handles a content message from a peer (never an error, group
// chat, carbon, receipt or marker: the tap filters those, so there are no
// loops). It runs on the Serve goroutine and never blocks.
func (r *recipient) received(ev *stanza.Evidence) {
	if ev.ReceiptRequested && !r.c.cfg.NoReceipts {
		r.queue(answer{to: ev.From, typ: ev.Type, ref: ev.ID})
	}
	if ev.Markable && !r.c.cfg.NoMarkers {
		peer := ev.From.Bare().String()
		r.mu.Lock()
		if _, ok := r.markable[peer]; !ok && len(r.markable) >= maxMarkable {
			// Full (peers the application never marks, or a flood of
			// senders): forget an arbitrary one rather than stop
			// remembering new peers for good.
			for k := range r.markable {
				delete(r.markable, k)
				break
			}
		}
		r.markable[peer] = answer{to: ev.From.Bare(), typ: ev.Type, ref: ev.ID, thread: ev.Thread, marker: true}
		r.mu.Unlock()
	}
}

func (r *recipient) queue(a answer) bool {
	select {
	case r.out <- a:
		return true
	default:
		r.c.log.Debug("xmpptrack: outbox full, answer dropped", "to", a.to.String(), "ref", a.ref)
		return false
	}
}

// MarkDisplayed sends an XEP-0333 displayed marker for the newest markable
// message received from peer, which tells the sender that it and every
// earlier message were displayed. It reports whether a marker was queued:
// false when there is nothing new to mark, when Config.NoMarkers is set,
// after Close, or when the outbox is full (then the message stays the one to
// mark, and a later call may send the marker). It never blocks, so it may be
// called from a Handler.
func (c *Client) MarkDisplayed(peer jid.JID) bool {
	if c.cfg.NoMarkers || c.ctx.Err() != nil {
		return false
	}
	r := c.rcp
	key := peer.Bare().String()
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.markable[key]
	if !ok || !r.queue(a) {
		return false
	}
	delete(r.markable, key)
	return true
}

// run writes queued answers until the client closes.
func (r *recipient) run() {
	for {
		select {
		case a := <-r.out:
			s, err := r.session()
			if err != nil {
				return
			}
			if err := s.Send(r.c.ctx, a.stanza()); err != nil {
				r.c.log.Debug("xmpptrack: answer not sent", "to", a.to.String(), "err", err)
			}
		case <-r.c.ctx.Done():
			return
		}
	}
}

// session returns the current session, waiting while the client reconnects.
// Unlike Client.Session it keeps working during Shutdown: peers are still
// answered while our own messages settle.
func (r *recipient) session() (*xmpp.Session, error) {
	c := r.c
	for {
		c.mu.Lock()
		s, up, closing := c.session, c.up, c.closing
		c.mu.Unlock()
		switch {
		case closing:
			return nil, ErrClientClosed
		case s != nil:
			return s, nil
		}
		select {
		case <-up:
		case <-c.done:
			return nil, ErrClientClosed
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		}
	}
}

func (a answer) stanza() xml.TokenReader {
	var payload xml.TokenReader
	if a.marker {
		payload = stanza.Marker{Type: stanza.MarkerDisplayed, ID: a.ref}.TokenReader()
		if a.thread != "" {
			payload = xmlstream.MultiReader(payload, xmlstream.Wrap(
				xmlstream.Token(xml.CharData(a.thread)), xml.StartElement{Name: xml.Name{Local: "thread"}}))
		}
	} else {
		payload = stanza.Receipt{ID: a.ref}.TokenReader()
	}
	typ := a.typ
	if typ == "" {
		typ = xstanza.NormalMessage
	}
	return xstanza.Message{To: a.to, Type: typ, ID: NewID()}.Wrap(payload)
}
