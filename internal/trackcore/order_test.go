package trackcore

import "testing"

// TestMarkerFollowsWireOrder checks that a displayed marker covers the
// messages written before the marked one, in wire order, not in
// registration order: with concurrent senders, x registered before y can be
// written after it.
func TestMarkerFollowsWireOrder(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	x := track(t, r, bob, "x", TrackOptions{})
	y := track(t, r, bob, "y", TrackOptions{})
	r.Written(bob, "y")
	r.Written(bob, "x")
	r.Delivered(bob, "", "x", nil)
	r.Delivered(bob, "", "y", nil)
	r.Displayed(bob, "", "y", "", nil) // x was written after y: no proof the peer saw it
	wantStates(t, []*MessageTracker{x, y}, DeliveredToRecipient, SeenByRecipient)
	r.Displayed(bob, "", "x", "", nil)
	wantStates(t, []*MessageTracker{x}, SeenByRecipient)
}

// TestMarkerCoversEarlierWritten checks the other half: a marker for the
// last message written covers one registered after it but written before
// it, receipt first or marker first.
func TestMarkerCoversEarlierWritten(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := track(t, r, bob, "a", TrackOptions{})
	b := track(t, r, bob, "b", TrackOptions{})
	c := track(t, r, bob, "c", TrackOptions{})
	r.Written(bob, "b")
	r.Written(bob, "c")
	r.Written(bob, "a")
	r.Delivered(bob, "", "b", nil)
	r.Delivered(bob, "", "a", nil)
	r.Displayed(bob, "", "a", "", nil)
	wantStates(t, []*MessageTracker{a, b, c}, SeenByRecipient, SeenByRecipient, InTransit)
	r.Delivered(bob, "", "c", nil) // its receipt after the marker: it waits for the next one
	wantStates(t, []*MessageTracker{c}, DeliveredToRecipient)
	r.Incoming(bob, "", "in")
	r.Displayed(bob, "", "in", "", nil)
	wantStates(t, []*MessageTracker{c}, SeenByRecipient)
}

// TestWrittenAgainMoves checks that a message written again (after a
// reconnection) takes a new position, that incoming messages share the
// counter, and that group chats are left alone.
func TestWrittenAgainMoves(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	x := track(t, r, bob, "x", TrackOptions{})
	y := track(t, r, bob, "y", TrackOptions{})
	r.Written(bob, "x")
	r.Written(bob, "y")
	r.Incoming(bob, "", "in")
	r.Written(bob, "x") // re-sent after the peer's message
	r.Delivered(bob, "", "x", nil)
	r.Delivered(bob, "", "y", nil)
	r.Displayed(bob, "", "in", "", nil)
	wantStates(t, []*MessageTracker{x, y}, DeliveredToRecipient, SeenByRecipient)
	c := r.convs[bob]
	for i := 1; i < len(c.order); i++ {
		if !before(c.order[i-1].seq, c.order[i].seq) {
			t.Fatalf("order not sorted at %d", i)
		}
	}

	const room = "ops@conference.example.org"
	g := track(t, r, room, "g", TrackOptions{Room: true})
	seq := g.seq
	r.Written(room, "g")
	r.Written(bob, "g") // another conversation's id
	if g.seq != seq {
		t.Fatalf("group chat message moved: %d -> %d", seq, g.seq)
	}
}
