package trackcore

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// TestPrivateConversation checks a conversation keyed by a full JID (a
// private message to a room occupant): only that full JID's receipts and
// markers count, and errors only from it, from the bare JID without a
// resource (the room) or from the domain; another occupant, who shares the
// bare JID, moves nothing.
func TestPrivateConversation(t *testing.T) {
	const room, dave, carol = "ops@conference.example.org", "ops@conference.example.org/dave", "ops@conference.example.org/carol"
	r := NewRegistry(Config[Response]{})
	pm := track(t, r, dave, "pm", TrackOptions{})
	group := track(t, r, room, "g", TrackOptions{Room: true})
	r.Delivered(room, carol, "pm", nil)
	r.Delivered(room, "", "pm", nil)
	r.Incoming(room, carol, "c1")
	r.Displayed(room, carol, "c1", "", nil)
	r.Displayed(room, carol, "pm", "", nil)
	r.ErrorReply(jid.MustParse(carol), "pm", &Response{Err: errReply})
	wantStates(t, []*MessageTracker{pm, group}, InTransit, InTransit)

	r.Delivered(room, dave, "pm", nil)
	wantStates(t, []*MessageTracker{pm}, DeliveredToRecipient)
	pm2 := track(t, r, dave, "pm2", TrackOptions{})
	r.Incoming(room, dave, "d1")
	r.Displayed(room, carol, "pm2", "", nil)
	wantStates(t, []*MessageTracker{pm, pm2}, DeliveredToRecipient, InTransit)
	r.Displayed(room, dave, "d1", "", nil) // dave's marker for his own message
	wantStates(t, []*MessageTracker{pm, pm2}, SeenByRecipient, InTransit)

	for _, from := range []string{room, "conference.example.org"} {
		id := "e-" + from
		m := track(t, r, dave, id, TrackOptions{})
		r.ErrorReply(jid.MustParse(from), id, &Response{Err: errReply})
		wantStates(t, []*MessageTracker{m}, Error)
	}
	r.ErrorReply(jid.MustParse(dave), "pm2", &Response{Err: errReply})
	wantStates(t, []*MessageTracker{pm2, group}, Error, InTransit)
}

// TestBareConversationAnyResource checks that a message to a bare JID still
// takes evidence from any resource of it.
func TestBareConversationAnyResource(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	m := track(t, r, bob, "m", TrackOptions{})
	r.Delivered(bob, bob+"/laptop", "m", nil)
	r.Displayed(bob, bob+"/phone", "m", "", nil)
	wantStates(t, []*MessageTracker{m}, SeenByRecipient)
	if r.nfull != 0 {
		t.Fatalf("nfull %d", r.nfull)
	}
}
