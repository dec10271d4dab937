package xmpptrack

import (
	"errors"
	"testing"

	"mellium.im/xmpp/jid"

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
