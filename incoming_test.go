package xmpptrack

import (
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestOnMessage: OnMessage gets each message with content once, in order,
// parsed; evidence, errors and carbons never reach it; a reply threads and
// a marker names the message the callback saw.
func TestOnMessage(t *testing.T) {
	got := make(chan *Incoming, 16)
	others := make(chan string, 16)
	c, pc := newPeer(t, Config{
		OnMessage: func(c *Client, m *Incoming) { got <- m },
		Handler: xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local == "message" {
				for _, a := range start.Attr {
					if a.Name.Local == "id" {
						others <- a.Value
					}
				}
			}
			return nil
		}),
	})
	tr := sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	// Evidence, an error, carbons, a chat state: never OnMessage.
	pc.send(`<message from='bob@example.org/pc' id='e1' type='chat'>%s</message>`, receiptFor(tr.ID()))
	pc.send(`<message from='bob@example.org/pc' id='e2' type='error'><body>bounced</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
	pc.send(carbon("alice@localhost", "sent", "e3", `<message from='alice@localhost/laptop' to='bob@example.org' id='c1' type='chat'><body>mine</body></message>`))
	pc.send(`<message from='bob@example.org/pc' id='e4' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	// Content.
	pc.send(`<message from='bob@example.org/pc' to='alice@localhost/phone' id='m1' type='chat'>` +
		`<body>hello &amp; welcome</body><thread>t1</thread><markable xmlns='urn:xmpp:chat-markers:0'/>` +
		`<origin-id xmlns='urn:xmpp:sid:0' id='o1'/><stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='alice@localhost'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='bob@example.org'/>` +
		`<delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05Z'/>` +
		`<x xmlns='jabber:x:oob'><url> https://example.org/a.png </url><desc>a picture</desc></x></message>`)
	pc.send(`<message from='room@muc.example.org/carol' id='g1' type='groupchat'><subject>plans</subject></message>`)
	pc.send(`<message from='bob@example.org/pc' id='m2'><x xmlns='jabber:x:oob'><url>https://example.org/b.pdf</url></x><markable xmlns='urn:xmpp:chat-markers:0'/></message>`)

	m := recv(t, got)
	want := Incoming{
		From: jid.MustParse("bob@example.org/pc"), To: jid.MustParse("alice@localhost/phone"),
		ID: "m1", Type: xstanza.ChatMessage, Body: "hello & welcome", Thread: "t1",
		OriginID: "o1", StanzaID: "s1", Delay: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Attachments: []Attachment{{URL: "https://example.org/a.png", Desc: "a picture"}},
	}
	if !m.From.Equal(want.From) || !m.To.Equal(want.To) || m.ID != want.ID || m.Type != want.Type || m.Body != want.Body ||
		m.Thread != want.Thread || m.OriginID != want.OriginID || m.StanzaID != want.StanzaID || !m.Delay.Equal(want.Delay) ||
		len(m.Attachments) != 1 || m.Attachments[0] != want.Attachments[0] || !m.Room.Equal(jid.JID{}) || m.Nick != "" {
		t.Errorf("got %+v\nwant %+v", *m, want)
	}
	g := recv(t, got)
	if g.ID != "g1" || g.Subject != "plans" || g.Room.String() != "room@muc.example.org" || g.Nick != "carol" || g.Body != "" {
		t.Errorf("group chat message: %+v", *g)
	}
	m2 := recv(t, got)
	if m2.ID != "m2" || m2.Type != xstanza.NormalMessage || len(m2.Attachments) != 1 || !m2.Delay.IsZero() {
		t.Errorf("attachment-only message: %+v", *m2)
	}
	for _, id := range []string{"e1", "e2", "e3", "e4"} {
		if got := recv(t, others); got != id {
			t.Errorf("Handler got %q, want %q", got, id)
		}
	}

	// A reply threads; the marker names m1, which the callback saw.
	if !c.MarkDisplayed(m.From) {
		t.Fatal("nothing to mark")
	}
	r, err := c.Reply(waitCtx(t), m, "hi bob")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e := pc.nextMessage(t)
		switch {
		case e.child(stanza.NSMarkers, "displayed") != nil:
			if id := e.child(stanza.NSMarkers, "displayed").attr("id"); id != "m2" && id != "m1" {
				t.Errorf("marker for %q", id)
			}
		case e.attr("id") == r.ID():
			if e.attr("to") != "bob@example.org/pc" || e.attr("type") != "chat" || e.child("jabber:client", "thread") == nil {
				t.Errorf("reply %s", e.String())
			}
		default:
			t.Errorf("wrote %s", e.String())
		}
	}
	if rm := g.Reply("ok"); rm.To.String() != "room@muc.example.org" || rm.Type != xstanza.GroupChatMessage {
		t.Errorf("reply to a room message: %+v", rm)
	}
}

// TestUnparsableAddressDropped: a stanza from an address mellium refuses
// (a resource starting with U+1100, which Prosody accepts) is dropped and
// counted; an IQ request from it gets an error built from the raw address;
// the session goes on, without reconnecting.
func TestUnparsableAddressDropped(t *testing.T) {
	const attacker = "carol@localhost/\u1100attacker"
	if _, err := jid.Parse(attacker); err == nil {
		t.Fatal("jid.Parse accepts the attacker's address; pick another")
	}
	got := make(chan string, 8)
	// A handler that fails on addresses it cannot parse, as mux.ServeMux
	// does.
	strict := xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		for _, a := range start.Attr {
			if a.Name.Local == "from" {
				if _, err := jid.Parse(a.Value); err != nil {
					return err
				}
			}
			if a.Name.Local == "id" {
				got <- a.Value
			}
		}
		return nil
	})
	c, pc := newPeer(t, Config{Handler: strict, OnMessage: func(_ *Client, m *Incoming) { got <- m.ID }})
	sendAcked(t, c, Message{To: bob}) // everything the server sent before is handled
	h0 := c.sm.Info().Handled
	pc.send(`<iq from='%s' type='get' id='iq1'><ping xmlns='urn:xmpp:ping'/></iq>`, attacker)
	pc.send(`<iq from='%s' type='result' id='iq2'/>`, attacker)
	pc.send(`<message from='%s' type='chat' id='m1'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, attacker)
	pc.send(`<presence from='%s' id='p1'/>`, attacker)
	pc.send(`<message from='bob@example.org/pc' to='%s' id='m2'><body>to a bad address</body></message>`, attacker)
	pc.send(`<message from='bob@example.org/pc' type='chat' id='probe'><body>hi</body></message>`)
	if id := recv(t, got); id != "probe" {
		t.Errorf("the application got %q first", id)
	}
	// Dropped stanzas count as handled: the server never sends them again.
	if h := c.sm.Info().Handled - h0; h != 6 {
		t.Errorf("%d stanzas handled, want 6 (5 dropped and the probe)", h)
	}
	e := pc.next(t)
	for e.XMLName.Local != "iq" {
		e = pc.next(t)
	}
	if e.XMLName.Local != "iq" || e.attr("type") != "error" || e.attr("id") != "iq1" || e.attr("to") != attacker {
		t.Errorf("answer to the IQ: %s", e.String())
	}
	if st := c.Stats(); st.Dropped != 5 || st.Reconnections != 0 || !st.Connected {
		t.Errorf("Stats %+v, want 5 dropped on the first connection", st)
	}
	sendAcked(t, c, Message{To: bob, ID: "after"})
}

// TestHandlerErrorIsNotFatal: an error returned by Handler is logged; the
// session goes on.
func TestHandlerErrorIsNotFatal(t *testing.T) {
	got := make(chan string, 4)
	c, pc := newPeer(t, Config{Handler: xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		for _, a := range start.Attr {
			if a.Name.Local == "id" {
				got <- a.Value
			}
		}
		return errors.New("the application failed")
	})})
	pc.send(`<presence from='bob@example.org/pc' id='p1'/>`)
	pc.send(`<presence from='bob@example.org/pc' id='p2'/>`)
	for _, want := range []string{"p1", "p2"} {
		if id := recv(t, got); id != want {
			t.Fatalf("got %q, want %q", id, want)
		}
	}
	if st := c.Stats(); st.Reconnections != 0 {
		t.Errorf("reconnected: %+v", st)
	}
}

// TestIQAnsweredOnce: an IQ request that Handler answers gets that answer
// only; one it leaves unanswered gets service-unavailable.
func TestIQAnsweredOnce(t *testing.T) {
	_, pc := newPeer(t, Config{Handler: xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		iq, err := xstanza.NewIQ(*start)
		if err != nil || iq.ID != "answered" {
			return err
		}
		_, err = xmlstream.Copy(t, iq.Result(nil))
		return err
	})})
	pc.send(`<iq from='bob@example.org/pc' to='alice@localhost/phone' type='get' id='answered'><ping xmlns='urn:xmpp:ping'/></iq>`)
	pc.send(`<iq from='bob@example.org/pc' to='alice@localhost/phone' type='get' id='ignored'><ping xmlns='urn:xmpp:ping'/></iq>`)
	pc.send(`<message from='bob@example.org/pc' type='chat' id='q'><body>x</body><request xmlns='urn:xmpp:receipts'/></message>`)
	var answers []string
	for {
		e := pc.next(t)
		if e.XMLName.Local == "message" {
			break // the receipt: every IQ was answered before it
		}
		if e.XMLName.Local == "presence" {
			continue
		}
		answers = append(answers, e.attr("id")+"/"+e.attr("type"))
	}
	if strings.Join(answers, " ") != "answered/result ignored/error" {
		t.Errorf("answers %v", answers)
	}
}

// TestMalformedStreamDropsTCP: when reading the stream fails under the
// client (here: XML that is not well-formed), it drops the connection
// instead of closing the stream, so the session can be resumed.
func TestMalformedStreamDropsTCP(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	m := sendAcked(t, c, Message{To: bob})
	pc.send(`<message from='bob@example.org/pc' id='bad'><body>x</bod></message>`)
	pc = srv.next(t)
	if !pc.resumed {
		t.Error("the stream was not resumed")
	}
	srv.mu.Lock()
	closes := srv.closes
	srv.mu.Unlock()
	if closes != 0 {
		t.Errorf("the client closed the stream %d times instead of dropping the connection", closes)
	}
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(m.ID()))
	waitState(t, m, tracking.DeliveredToRecipient)
}

// recv receives from ch within testWait.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testWait):
		t.Fatal("nothing came")
		var zero T
		return zero
	}
}

// TestForeignAttributesStripped: attributes of another namespace named
// like a stanza's own (a:from, a:to, a:id, a:type), which servers relay
// from any sender, are removed before mellium or the application sees the
// stanza: mellium read a:from='@@bad@@' as the address of an IQ it
// answered, refused it and ended the session (review hunt-corr 2). The
// IQ is answered to its real sender, the application sees the stanza
// without them, and the session goes on.
func TestForeignAttributesStripped(t *testing.T) {
	got := make(chan []xml.Attr, 8)
	seen := xmpp.HandlerFunc(func(_ xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local == "presence" {
			got <- slices.Clone(start.Attr)
		}
		return nil
	})
	c, pc := newPeer(t, Config{Handler: seen})
	sendAcked(t, c, Message{To: bob})
	pc.send(`<iq xmlns:a='urn:example:x' a:from='@@bad@@' a:type='result' from='bob@example.org/pc' type='get' id='iq1'><ping xmlns='urn:xmpp:ping'/></iq>`)
	e := pc.next(t)
	for e.XMLName.Local != "iq" {
		e = pc.next(t)
	}
	if e.attr("type") != "error" || e.attr("id") != "iq1" || e.attr("to") != "bob@example.org/pc" {
		t.Errorf("answer to the IQ: %s", e.String())
	}
	pc.send(`<presence xmlns:a='urn:example:x' a:from='carol@example.org/x' from='bob@example.org/pc' a:id='x' id='p1'/>`)
	attrs := recv(t, got)
	for _, a := range attrs {
		if a.Name.Space != "" && a.Name.Space != "xmlns" {
			t.Errorf("the application got the foreign attribute %v=%q", a.Name, a.Value)
		}
	}
	if st := c.Stats(); st.Reconnections != 0 || !st.Connected || st.Dropped != 0 {
		t.Errorf("Stats %+v, want the first connection, nothing dropped", st)
	}
	sendAcked(t, c, Message{To: bob, ID: "after"})
}
