package xmpptrack

import (
	"encoding/xml"
	"errors"
	"fmt"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestPrivateMessageToOccupant: a private message to a room occupant
// (room@service/dave) is a conversation with dave's occupant JID. carol,
// another occupant, shares the room's bare JID and may know the id (ids can
// be seen in the room): her receipts, markers, legacy received markers and
// error replies for it change nothing, with or without a group-chat message
// of ours pending in the room. dave's own evidence counts, and so does an
// error from the room itself.
func TestPrivateMessageToOccupant(t *testing.T) {
	const carol = "ops@conference.example.org/carol"
	dave := jid.MustParse("ops@conference.example.org/dave")
	forge := func(e *badInputEnv, id string) {
		e.inject(`<message from='%s' id='c-r-%s' type='chat'>%s</message>`, carol, id, receiptFor(id))
		e.inject(`<message from='%s' id='c-m-%s' type='chat'><received xmlns='%s' id='%s'/></message>`, carol, id, stanza.NSMarkers, id)
		e.inject(`<message from='%s' id='c-d-%s' type='chat'>%s</message>`, carol, id, displayedFor(id))
		e.inject(`<message from='%s' id='%s' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, carol, id)
		// carol's own message, then a marker naming it: no position in
		// dave's conversation either.
		e.inject(`<message from='%s' id='c-in-%s' type='chat'><body>hi</body></message>`, carol, id)
		e.inject(`<message from='%s' id='c-d2-%s' type='chat'>%s</message>`, carol, id, displayedFor("c-in-"+id))
	}
	for _, withRoom := range []bool{false, true} {
		name := "only private messages pending"
		if withRoom {
			name = "a room message pending too"
		}
		t.Run(name, func(t *testing.T) {
			e := newBadInputEnv(t, Config{})
			if withRoom {
				e.send(Message{To: dave.Bare(), Type: "groupchat", Body: "to the room"})
			}
			pm := e.send(Message{To: dave, Body: "to dave only"})
			if pm.To() != dave.String() {
				t.Errorf("conversation %q, want dave's occupant JID", pm.To())
			}
			forge(e, pm.ID())
			e.barrier()
			wantState(t, pm, tracking.DeliveredToServer)

			// dave's receipt counts, and a marker from dave after it.
			e.inject(`<message from='%s' id='d-r' type='chat'>%s</message>`, dave, receiptFor(pm.ID()))
			waitState(t, pm, tracking.DeliveredToRecipient)
			pm2 := e.send(Message{To: dave, Body: "second"})
			forge(e, pm2.ID())
			e.barrier()
			wantState(t, pm2, tracking.DeliveredToServer)
			wantState(t, pm, tracking.DeliveredToRecipient)
			e.inject(`<message from='%s' id='d-d' type='chat'>%s</message>`, dave, displayedFor(pm2.ID()))
			waitState(t, pm2, tracking.SeenByRecipient)
			waitState(t, pm, tracking.SeenByRecipient)

			// The room itself speaks for the room: its error counts.
			pm3 := e.send(Message{To: dave, Body: "third"})
			e.inject(`<message from='%s' id='%s' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`, dave.Bare(), pm3.ID())
			if _, err := pm3.Wait(waitCtx(t), tracking.DeliveredToRecipient); !errors.Is(err, tracking.ErrFailed) {
				t.Fatalf("an error from the room: %v, want ErrFailed", err)
			}
			e.finish()
		})
	}
}

// mucUsers counts w's muc#user <x/> children.
func mucUsers(w element) int {
	n := 0
	for _, c := range w.Children {
		if c.XMLName.Space == stanza.NSMUCUser && c.XMLName.Local == "x" {
			n++
		}
	}
	return n
}

// TestPrivateMessageMUCUser: what we write to a room's occupant in private
// carries XEP-0045's muc#user <x/> once (§7.5): a message Send writes to an
// occupant of a room joined with package muc (one <x/> when the payload has
// one already), a receipt and a displayed marker to an occupant, whether
// its room is joined, known by an earlier <x/>, or said by the message's
// own <x/>. Nothing to a person, nor a message to a room left. Before,
// nothing carried it.
func TestPrivateMessageMUCUser(t *testing.T) {
	e := newBadInputEnv(t, Config{})
	room := jid.MustParse("ops@conference.example.org")
	dave := jid.MustParse("ops@conference.example.org/dave")
	remove := e.c.Observe(roomObserver(room, ""))
	sent := func(m Message, want int) {
		t.Helper()
		tr := sendAcked(t, e.c, m)
		if w := e.written(func(w element) bool { return w.attr("id") == tr.ID() }); mucUsers(w) != want {
			t.Errorf("message to %s: %s, want %d muc#user <x/>", m.To, w.String(), want)
		}
	}
	sent(Message{To: dave, Body: "psst"}, 1)
	x := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: stanza.NSMUCUser, Local: "x"}})
	sent(Message{To: dave, Body: "psst", Payload: x}, 1)
	sent(Message{To: bob, Body: "hi"}, 0)

	answered := func(from, extra string, marker bool, want int) {
		t.Helper()
		id := fmt.Sprintf("m%d", e.n)
		e.inject(`<message from='%s' id='%s' type='chat'><body>hi</body><request xmlns='%s'/><markable xmlns='%s'/>%s</message>`,
			from, id, stanza.NSReceipts, stanza.NSMarkers, extra)
		w := nextAnswer(t, e)
		checkAnswer(t, w, from, "chat", id, false)
		if mucUsers(w) != want {
			t.Errorf("receipt to %s: %s, want %d muc#user <x/>", from, w.String(), want)
		}
		if !marker {
			return
		}
		e.app.waitFor(t, id) // the reader remembers it before the application gets it
		if !e.c.MarkConversation(&Incoming{From: jid.MustParse(from), Type: xstanza.ChatMessage}) {
			t.Fatalf("%s's message: nothing to mark", from)
		}
		w = nextAnswer(t, e)
		checkAnswer(t, w, from, "chat", id, true)
		if mucUsers(w) != want {
			t.Errorf("marker to %s: %s, want %d muc#user <x/>", from, w.String(), want)
		}
	}
	answered(dave.String(), "", true, 1)                           // the room joined
	answered("bob@example.org/pc", "", false, 0)                   // a person
	answered("dev@conference.example.org/erin", mucUserX, true, 1) // its own <x/>
	answered("dev@conference.example.org/frank", "", true, 1)      // the room known
	remove()
	sent(Message{To: dave, Body: "psst"}, 0) // the room is left
	e.finish()
}
