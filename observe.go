package xmpptrack

import (
	"encoding/xml"
	"sync"

	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// Observer lets an extension, such as this module's muc package, see incoming
// stanzas before the application's handler does. Message and Presence run on
// the goroutine that reads the stream, in stream order: they must not block
// and must not send (hand work to another goroutine). Any field may be nil.
type Observer struct {
	// Message receives every incoming message, parsed. Returning true
	// consumes it: the application's handler does not see it.
	Message func(ev *stanza.Evidence) (consume bool)
	// Presence receives every incoming presence with its children.
	Presence func(p xstanza.Presence, r xml.TokenReader)
	// Connected is called after every new connection, once stream
	// management is up and just before the session is handed to senders,
	// on a goroutine of the client's (it must not wait for the session);
	// resumed reports a resumed stream, on which state such as room
	// membership survived.
	Connected func(resumed bool)
}

// observers is the client's copy-on-write list of observers.
type observers struct {
	mu   sync.Mutex
	list []*Observer
}

func (o *observers) get() []*Observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.list
}

// Observe adds an observer and returns a function that removes it.
func (c *Client) Observe(obs Observer) (remove func()) {
	p := &obs
	c.obs.mu.Lock()
	c.obs.list = append(c.obs.list[:len(c.obs.list):len(c.obs.list)], p)
	c.obs.mu.Unlock()
	return func() {
		c.obs.mu.Lock()
		defer c.obs.mu.Unlock()
		kept := make([]*Observer, 0, len(c.obs.list))
		for _, q := range c.obs.list {
			if q != p {
				kept = append(kept, q)
			}
		}
		c.obs.list = kept
	}
}
