package trackcore

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// TestDisplayedLiftsOnlyProven checks the marker rule: a displayed marker
// lifts the message it names and every earlier one proven delivered
// (DELIVERED_TO_RECIPIENT, including an ERROR lifted by a receipt); earlier
// messages without proof keep their state and can still get their own
// receipt or marker. This is the recipient that died while messages were
// acked into its dead session: its marker for a later message must not
// claim them.
func TestDisplayedLiftsOnlyProven(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	lost := track(t, r, bob, "lost", TrackOptions{})           // never reached bob
	acked := track(t, r, bob, "acked", TrackOptions{})         // acked by our server only
	got := track(t, r, bob, "got", TrackOptions{})             // receipted
	bounced := track(t, r, bob, "bounced", TrackOptions{})     // error reply
	recovered := track(t, r, bob, "recovered", TrackOptions{}) // error, then a receipt
	named := track(t, r, bob, "named", TrackOptions{})         // the marker names it
	later := track(t, r, bob, "later", TrackOptions{})
	r.ServerAck(bob, "acked")
	r.Delivered(bob, "", "got", nil)
	r.ErrorReply(jid.MustParse(bob), "bounced", &Response{Err: errReply})
	r.ErrorReply(jid.MustParse(bob), "recovered", &Response{Err: errReply})
	r.Delivered(bob, "", "recovered", nil)
	r.Displayed(bob, "", "named", "", nil)
	all := []*MessageTracker{lost, acked, got, bounced, recovered, named, later}
	wantStates(t, all, InTransit, DeliveredToServer, SeenByRecipient, Error, SeenByRecipient, SeenByRecipient, InTransit)

	// The same marker again proves nothing new.
	r.Displayed(bob, "", "named", "", nil)
	wantStates(t, all, InTransit, DeliveredToServer, SeenByRecipient, Error, SeenByRecipient, SeenByRecipient, InTransit)

	// Their own evidence still counts: a receipt, then a later marker.
	r.Delivered(bob, "", "acked", nil)
	wantStates(t, []*MessageTracker{acked}, DeliveredToRecipient)
	r.Displayed(bob, "", "named", "", nil) // a marker after the proof lifts it
	wantStates(t, []*MessageTracker{lost, acked, bounced}, InTransit, SeenByRecipient, Error)
	r.Displayed(bob, "", "lost", "", nil) // its own marker
	wantStates(t, []*MessageTracker{lost, bounced}, SeenByRecipient, Error)

	// A receipt for a message the last marker walked past waits for the
	// next marker, which may name a message of the peer.
	r.Delivered(bob, "", "bounced", nil)
	wantStates(t, []*MessageTracker{bounced}, DeliveredToRecipient)
	r.Incoming(bob, "", "their-1")
	r.Displayed(bob, "", "their-1", "", nil)
	wantStates(t, []*MessageTracker{bounced, later}, SeenByRecipient, InTransit)
	if n := len(r.convs[bob].mk.late); n != 0 {
		t.Fatalf("%d trackers left waiting for a marker", n)
	}
}

// TestDisplayedWaitDoesNotClaimDelivery is the user-visible side: Wait for
// DELIVERED_TO_RECIPIENT on a message the recipient never got must not
// return SEEN_BY_RECIPIENT because of a marker for a later message.
func TestDisplayedWaitDoesNotClaimDelivery(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	lost := track(t, r, bob, "lost", TrackOptions{})
	r.ServerAck(bob, "lost")
	track(t, r, bob, "next", TrackOptions{})
	r.Delivered(bob, "", "next", nil)
	r.Displayed(bob, "", "next", "", nil)
	if st := lost.State(); st != DeliveredToServer {
		t.Fatalf("a message without proof of delivery became %v on a marker for a later one", st)
	}
	if lost.Settled() {
		t.Fatal("the message stopped being tracked")
	}
}

// TestLateReceiptThreaded checks that a message of a thread that gets its
// receipt after a marker of its thread walked past it is lifted by the
// thread's next marker, and not by a marker of another thread.
func TestLateReceiptThreaded(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := track(t, r, bob, "a", TrackOptions{Thread: "t1"})
	b := track(t, r, bob, "b", TrackOptions{Thread: "t1"})
	track(t, r, bob, "x", TrackOptions{Thread: "t2"})
	r.Displayed(bob, "", "b", "t1", nil)
	wantStates(t, []*MessageTracker{a, b}, InTransit, SeenByRecipient)
	r.Delivered(bob, "", "a", nil)
	r.Displayed(bob, "", "x", "t2", nil)
	wantStates(t, []*MessageTracker{a}, DeliveredToRecipient)
	r.Displayed(bob, "", "b", "t1", nil)
	wantStates(t, []*MessageTracker{a}, SeenByRecipient)
}

// TestLateLiftedInParts: late trackers (receipts after a marker walked
// past them) are lifted by later markers each up to its position, in any
// order of their receipts; a marker below all of them (a stale repeat,
// which returns without walking them: review hunt-corr 4) lifts none and
// loses none.
func TestLateLiftedInParts(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	var ms []*MessageTracker
	for _, id := range []string{"m0", "m1", "m2", "m3", "m4", "m5"} {
		ms = append(ms, track(t, r, bob, id, TrackOptions{}))
	}
	r.Delivered(bob, "", "m5", nil)
	r.Displayed(bob, "", "m5", "", nil) // walks past m0..m4, all without proof
	for _, id := range []string{"m3", "m1", "m4", "m2"} {
		r.Delivered(bob, "", id, nil) // late, in this order
	}
	pending := track(t, r, bob, "m6", TrackOptions{}) // keeps the conversation
	r.Incoming(bob, "", "their-0")
	wantStates(t, ms[1:5], DeliveredToRecipient, DeliveredToRecipient, DeliveredToRecipient, DeliveredToRecipient)
	r.Displayed(bob, "", "m0", "", nil) // below every late one: only its own
	wantStates(t, ms[:5], SeenByRecipient, DeliveredToRecipient, DeliveredToRecipient, DeliveredToRecipient, DeliveredToRecipient)
	r.Displayed(bob, "", "m0", "", nil) // repeated
	r.Displayed(bob, "", "m2", "", nil) // lifts m1, m2
	wantStates(t, ms[1:5], SeenByRecipient, SeenByRecipient, DeliveredToRecipient, DeliveredToRecipient)
	r.Displayed(bob, "", "m1", "", nil) // stale again
	wantStates(t, ms[3:5], DeliveredToRecipient, DeliveredToRecipient)
	r.Displayed(bob, "", "m3", "", nil) // lifts m3 only
	wantStates(t, ms[3:5], SeenByRecipient, DeliveredToRecipient)
	r.Displayed(bob, "", "their-0", "", nil) // after every message of ours
	wantStates(t, []*MessageTracker{ms[4], pending}, SeenByRecipient, InTransit)
	if n := len(r.convs[bob].mk.late); n != 0 {
		t.Fatalf("%d trackers left waiting for a marker", n)
	}
}
