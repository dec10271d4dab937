package xmpptrack

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// TestOccupantsForgottenWhileJoined: removing a second observer of a
// joined room (what package muc does when the room's error says we are
// probably out of it, before it joins again) forgets the occupants'
// private messages, the one remembered and the one still waiting for
// OnMessage, as leaving does, while the first observer keeps the room: a
// private message that comes after is its occupant's conversation, and the
// room is marked through the first observer.
func TestOccupantsForgottenWhileJoined(t *testing.T) {
	cfg, release, got := heldAtSlow()
	c := newTapClient(t, cfg)
	room := jid.MustParse("room@conf.example.org")
	defer c.Observe(roomObserver(room, "g1"))()
	feedTap(t, c, nil, chatFrom("room@conf.example.org/carol", "p1", ""))
	carol := <-got // remembered
	feedTap(t, c, nil, chatFrom("bob@example.org/pc", "slow", ""))
	feedTap(t, c, nil, chatFrom("room@conf.example.org/dave", "d1", ""))
	c.Observe(roomObserver(room, ""))() // dave's message waits for OnMessage
	close(release)
	<-got
	dave := <-got
	for _, m := range []*Incoming{carol, dave} {
		if c.MarkConversation(m) {
			t.Errorf("%s's private message was marked after the room's twin observer was removed", m.From)
		}
	}
	wantQueued(t, c)
	feedTap(t, c, nil, chatFrom("room@conf.example.org/erin", "e1", ""))
	if erin := <-got; !c.MarkConversation(erin) || !c.MarkDisplayed(room) {
		t.Fatal("erin's private message or the room: nothing to mark")
	}
	wantQueued(t, c, "room@conf.example.org/erin chat e1", "room@conf.example.org groupchat g1")
}
