package interop

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

const (
	nsReceipts = "urn:xmpp:receipts"
	nsMarkers  = "urn:xmpp:chat-markers:0"
	nsSID      = "urn:xmpp:sid:0"
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = "http://jabber.org/protocol/muc#user"
)

// idAttr is an element that only carries an id.
type idAttr struct {
	ID string `xml:"id,attr"`
}

// inStanza is what the test client keeps of an incoming message or
// presence, decoded with encoding/xml only (independent of the project's
// parsers).
type inStanza struct {
	XMLName   xml.Name
	From      string        `xml:"from,attr"`
	ID        string        `xml:"id,attr"`
	Type      string        `xml:"type,attr"`
	Body      string        `xml:"body"`
	Received  *idAttr       `xml:"urn:xmpp:receipts received"`
	Displayed *idAttr       `xml:"urn:xmpp:chat-markers:0 displayed"`
	StanzaIDs []xmlStanzaID `xml:"urn:xmpp:sid:0 stanza-id"`
	MUCUser   []mucUser     `xml:"http://jabber.org/protocol/muc#user x"`
	// Seq is the position in the client's input, from 0; At the time it
	// was decoded.
	Seq int       `xml:"-"`
	At  time.Time `xml:"-"`
}

type xmlStanzaID struct {
	ID string `xml:"id,attr"`
	By string `xml:"by,attr"`
}

type mucUser struct {
	Status []struct {
		Code string `xml:"code,attr"`
	} `xml:"status"`
}

func (s inStanza) String() string {
	out, _ := xml.Marshal(s)
	return string(out)
}

// client is a plain mellium session that records every message and presence
// it receives.
type client struct {
	s   *xmpp.Session
	jid jid.JID

	mu      sync.Mutex
	in      []inStanza
	changed chan struct{}
	served  chan struct{}
	err     error
}

// dialClient logs local in on srv over plaintext loopback (SCRAM-SHA-1 or
// PLAIN), starts serving, sends initial presence, and closes the session in
// t.Cleanup.
func dialClient(ctx context.Context, t testing.TB, srv *testserver.Server, local string) *client {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	origin := srv.JID(local)
	features := []xmpp.StreamFeature{
		xmpp.SASL("", srv.Password(local), sasl.ScramSha1, sasl.Plain),
		xmpp.BindResource(),
	}
	// Secure: plaintext on loopback is acceptable for the test client.
	s, err := xmpp.NewSession(ctx, origin.Domain(), origin, conn, xmpp.Secure, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		conn.Close()
		t.Fatalf("client %s: %v", local, err)
	}
	c := &client{s: s, jid: s.LocalAddr(), changed: make(chan struct{}), served: make(chan struct{})}
	go func() {
		err := s.Serve(xmpp.HandlerFunc(c.handle))
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.served)
	}()
	t.Cleanup(func() {
		s.Close()
		timer := time.NewTimer(5 * time.Second)
		defer timer.Stop()
		select {
		case <-c.served:
		case <-timer.C:
		}
		conn.Close()
		<-c.served
	})
	if err := s.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatalf("client %s: presence: %v", local, err)
	}
	// Once the server echoes the presence, messages to the bare JID reach
	// this session.
	if _, err := c.wait(ctx, "own presence", func(st inStanza) bool {
		return st.XMLName.Local == "presence" && st.From == c.jid.String()
	}); err != nil {
		t.Fatalf("client %s: %v", local, err)
	}
	return c
}

func (c *client) handle(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" && start.Name.Local != "presence" {
		return nil
	}
	var st inStanza
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
	if err := d.Decode(&st); err != nil {
		return err
	}
	c.mu.Lock()
	st.Seq, st.At = len(c.in), time.Now()
	c.in = append(c.in, st)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// wait returns the first recorded stanza for which match is true, waiting
// for it until ctx is done.
func (c *client) wait(ctx context.Context, what string, match func(inStanza) bool) (inStanza, error) {
	next := 0
	for {
		c.mu.Lock()
		in := c.in[next:len(c.in):len(c.in)]
		changed, served, err := c.changed, c.served, c.err
		c.mu.Unlock()
		for _, st := range in {
			if match(st) {
				return st, nil
			}
		}
		next += len(in)
		select {
		case <-ctx.Done():
			return inStanza{}, fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-served:
			c.mu.Lock()
			grew := len(c.in) > next
			c.mu.Unlock()
			if !grew {
				return inStanza{}, fmt.Errorf("waiting for %s: session ended (%v)", what, err)
			}
		case <-changed:
		}
	}
}

// received returns a snapshot of everything recorded.
func (c *client) received() []inStanza {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]inStanza(nil), c.in...)
}

// sendTracked sends a message with a body, a receipt request and
// <markable/>.
func (c *client) sendTracked(ctx context.Context, to jid.JID, typ stanza.MessageType, id, body string) error {
	payload := xmlstream.MultiReader(
		xmlstream.Wrap(xmlstream.Token(xml.CharData(body)), xml.StartElement{Name: xml.Name{Local: "body"}}),
		xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsReceipts, Local: "request"}}),
		xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsMarkers, Local: "markable"}}),
	)
	return c.s.Send(ctx, stanza.Message{To: to, Type: typ, ID: id}.Wrap(payload))
}

// join enters room as nick and waits for the self-presence (status 110).
func (c *client) join(ctx context.Context, room jid.JID, nick string) error {
	occupant, err := room.WithResource(nick)
	if err != nil {
		return err
	}
	x := xmlstream.Wrap(
		xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Local: "history"}, Attr: []xml.Attr{{Name: xml.Name{Local: "maxstanzas"}, Value: "0"}}}),
		xml.StartElement{Name: xml.Name{Space: nsMUC, Local: "x"}},
	)
	if err := c.s.Send(ctx, stanza.Presence{To: occupant}.Wrap(x)); err != nil {
		return err
	}
	self, err := c.wait(ctx, "self-presence in "+room.String(), func(st inStanza) bool {
		if st.XMLName.Local != "presence" || st.From != occupant.String() {
			return false
		}
		if st.Type == "error" {
			return true
		}
		for _, x := range st.MUCUser {
			for _, s := range x.Status {
				if s.Code == "110" {
					return true
				}
			}
		}
		return false
	})
	if err == nil && self.Type == "error" {
		err = fmt.Errorf("joining %s: %s", occupant, self)
	}
	return err
}
