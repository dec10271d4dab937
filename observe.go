package xmpptrack

import (
	"context"
	"encoding/xml"
	"sync"
	"sync/atomic"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Observer lets an extension, such as this module's muc package, see incoming
// stanzas before the application's callbacks do, and hear connections come
// and go. Any field may be nil.
//
// Message and Presence are for library code: they run on the goroutine
// that reads the stream, in stream order, and must not block and must not
// send (hand work to another goroutine); the stream stops while they run.
// Applications read messages with Config.OnMessage and other stanzas with
// Config.Handler, which run on a goroutine of their own.
//
// Connected and Disconnected run on the goroutine of the application's
// callbacks, in order with Config.OnMessage and Config.Handler: they may
// call any method of the client.
type Observer struct {
	// Message receives every incoming message, parsed. Returning true
	// consumes it: Config.OnMessage and Config.Handler do not see it (the
	// muc package consumes our own messages reflected by a room this way).
	Message func(ev *stanza.Evidence) (consume bool)
	// Presence receives every incoming presence with its children.
	Presence func(p xstanza.Presence, r xml.TokenReader)
	// IQ receives every incoming IQ result or error (requests are not
	// shown) with its children, on the reading goroutine like Message.
	// Returning true consumes it: the answer to a request the observer
	// wrote itself. (mellium's own requests are answered before this.)
	IQ func(iq xstanza.IQ, r xml.TokenReader) (consume bool)
	// Connected is called after every new connection, once stream
	// management is up and the session is handed to senders; resumed
	// reports a resumed stream, on which state such as room membership
	// survived.
	Connected func(resumed bool)
	// Disconnected is called when a connection that Connected reported
	// ends, with the reason (nil for a clean end of the stream). The client
	// reconnects unless it is closing; Client.Err reports a permanent
	// failure.
	Disconnected func(err error)

	// Room, Route and Mark let an extension that joined a group chat (package
	// muc does) take over the client's messages to it. Client.Send and
	// Client.TrySend of any message whose To is Room (a bare JID) call Route
	// instead, so that the room tracks it: the room's reflection proves it
	// and is not handed to the application. Client.MarkDisplayed of the
	// room, or of one of its occupants, and Client.MarkConversation of a
	// group chat message from the room queue a displayed marker for the id
	// that Mark returns, sent to the room as a group chat message; Mark
	// returns "" when there is nothing new to mark. Once the observer is
	// removed, MarkConversation of a group chat message queues nothing.
	// While the observer is there, messages from the room's occupants that
	// are not group chat messages are private conversations, each with its
	// occupant's full JID (see Client.MarkConversation); once it is
	// removed, they are forgotten, even while another observer of the room
	// stays (package muc adds and removes a twin of its observer, with
	// Room, Route and Mark only, when it joins the room again after an
	// error). Mark runs under the client's lock: it must not block or call
	// the client. Mark may be called once more after the function Observe
	// returned has run: return "" once removal began.
	Room  jid.JID
	Route func(ctx context.Context, m Message) (*tracking.MessageTracker, error)
	Mark  func() (id string)
}

// roomOf returns the observer that takes over messages to addr, if any.
func (c *Client) roomOf(addr jid.JID) *Observer {
	if addr.Resourcepart() != "" {
		return nil
	}
	for _, o := range c.obs.get() {
		if o.Route != nil && o.Room.Equal(addr) {
			return o
		}
	}
	return nil
}

// observers is the client's copy-on-write list of observers: readers (every
// incoming stanza, every Send) load it without a lock; writers, one at a
// time under mu, store a new list.
type observers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*Observer]
}

func (o *observers) get() []*Observer {
	if l := o.list.Load(); l != nil {
		return *l
	}
	return nil
}

// set stores the list that f makes of the current one.
func (o *observers) set(f func(old []*Observer) []*Observer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := f(o.get())
	o.list.Store(&l)
}

// Observe adds an observer and returns a function that removes it.
func (c *Client) Observe(obs Observer) (remove func()) {
	p := &obs
	c.obs.set(func(old []*Observer) []*Observer { return append(old[:len(old):len(old)], p) })
	return func() {
		c.obs.set(func(old []*Observer) []*Observer {
			kept := make([]*Observer, 0, len(old))
			for _, q := range old {
				if q != p {
					kept = append(kept, q)
				}
			}
			return kept
		})
		if p.Route != nil && c.rcp != nil {
			// We are out of the room: its occupants' private messages
			// cannot be marked (the room refuses a non-occupant's). The
			// room stays known as one, so that nothing is marked to its
			// bare JID.
			c.rcp.forgetRoom(p.Room.Bare().String())
		}
	}
}
