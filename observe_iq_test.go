package xmpptrack

import (
	"encoding/xml"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	xstanza "mellium.im/xmpp/stanza"
)

// TestObserverIQ: an observer sees IQ results and errors with their
// children and consumes the answers to its own requests; other IQs, and
// requests, reach the application's Handler.
func TestObserverIQ(t *testing.T) {
	handled := make(chan string, 8)
	app := xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local == "iq" {
			for _, a := range start.Attr {
				if a.Name.Local == "id" {
					handled <- a.Value
				}
			}
		}
		return nil
	})
	c, pc := newPeer(t, Config{Handler: app})
	seen := make(chan string, 8)
	c.Observe(Observer{IQ: func(iq xstanza.IQ, r xml.TokenReader) bool {
		var feature string
		for tok, err := r.Token(); err == nil; tok, err = r.Token() {
			if s, ok := tok.(xml.StartElement); ok && s.Name.Local == "feature" {
				feature = s.Attr[0].Value
			}
		}
		seen <- iq.ID + " " + string(iq.Type) + " " + feature
		return iq.ID == "mine"
	}})
	pc.send(`<iq type='result' id='mine' from='room@conference.example.org' to='alice@localhost/phone'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:sid:0'/></query></iq>`)
	pc.send(`<iq type='error' id='other' from='example.org' to='alice@localhost/phone'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	pc.send(`<iq type='get' id='request' from='example.org' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if got := recv(t, seen); got != "mine result urn:xmpp:sid:0" {
		t.Fatalf("observer saw %q", got)
	}
	if got := recv(t, seen); got != "other error " {
		t.Fatalf("observer saw %q", got)
	}
	if got := recv(t, handled); got != "other" {
		t.Fatalf("the handler got %q first, want the unconsumed error", got)
	}
	if got := recv(t, handled); got != "request" {
		t.Fatalf("the handler got %q, want the request", got)
	}
	if len(seen) != 0 {
		t.Fatalf("the observer saw a request: %q", <-seen)
	}
}
