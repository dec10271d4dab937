package muc_test

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationPrivateMessageMarked: an occupant (bob, through the room)
// sends a private message to our occupant while we are in the room; our
// client's receipt and, on Client.MarkConversation of the message, its
// displayed marker go back to bob's occupant JID through the room, and move
// bob's tracker to SEEN_BY_RECIPIENT. Client.MarkDisplayed of the same
// address marks the room instead (its newest message), as it did before.
func TestIntegrationPrivateMessageMarked(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("pmroom@" + srv.MUCDomain())
		got := make(chan *xmpptrack.Incoming, 16)
		alice := dial(t, srv, "alice", xmpptrack.Config{OnMessage: func(_ *xmpptrack.Client, m *xmpptrack.Incoming) {
			if m.Delay.IsZero() {
				got <- m
			}
		}})
		bob := dial(t, srv, "bob", xmpptrack.Config{})
		join(t, ctx, alice, withNick(room, "alice"))
		rb := join(t, ctx, bob, withNick(room, "bob"))

		next := func() *xmpptrack.Incoming {
			t.Helper()
			select {
			case m := <-got:
				return m
			case <-ctx.Done():
				t.Fatal("OnMessage was not called")
				return nil
			}
		}
		if _, err := rb.Send(ctx, "to the room"); err != nil {
			t.Fatal(err)
		}
		group := next()
		pm, err := bob.Send(ctx, xmpptrack.Message{To: withNick(room, "alice"), Type: xstanza.ChatMessage, Body: "psst"})
		if err != nil {
			t.Fatal(err)
		}
		m := next()
		if m.Body != "psst" || m.Type != xstanza.ChatMessage || !m.From.Equal(withNick(room, "bob")) {
			t.Fatalf("OnMessage got %+v, want bob's private message", m)
		}
		if st, err := pm.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatalf("the private message stopped at %s: %v", st, err)
		}
		if !alice.MarkConversation(m) {
			t.Fatal("MarkConversation of the private message queued nothing")
		}
		if st, err := pm.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("the private message stopped at %s: %v", st, err)
		}
		if r := pm.Response(); r == nil || !r.From.Equal(withNick(room, "alice")) {
			t.Fatalf("the private message's proof %+v, want our occupant's marker", r)
		}
		// The same address, as the From of bob's group chat message, is
		// the room's.
		if !group.From.Equal(m.From) || !alice.MarkDisplayed(m.From) {
			t.Fatal("MarkDisplayed of the occupant did not mark the room")
		}
	})
}
