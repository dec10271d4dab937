package registry

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestClientTrackersAreReadOnly checks that a tracker the registry made
// refuses Advance with tracking.ErrReadOnly and keeps its state, while
// evidence through the registry, Advance from inside the module and Close
// still move it.
func TestClientTrackersAreReadOnly(t *testing.T) {
	r := New(Config{})
	defer r.Close()
	tr, err := r.TryTrack("bob@example.org", "m1", TrackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []tracking.MessageState{tracking.DeliveredToServer, tracking.SeenByRecipient, tracking.Error} {
		if err := tr.Advance(to, nil); !errors.Is(err, tracking.ErrReadOnly) {
			t.Fatalf("Advance(%v) on a client tracker = %v, want ErrReadOnly", to, err)
		}
	}
	if st := tr.State(); st != tracking.InTransit {
		t.Fatalf("state %v after refused Advance calls, want IN_TRANSIT", st)
	}
	r.ServerAck("bob@example.org", "m1")
	if !Advance(tr, tracking.DeliveredToRecipient, &tracking.Response{ID: "r1"}) {
		t.Fatal("registry.Advance refused DTS -> DTR")
	}
	if st, resp := tr.State(), tr.Response(); st != tracking.DeliveredToRecipient || resp == nil || resp.ID != "r1" {
		t.Fatalf("state %v resp %+v", st, resp)
	}
	tr2, _ := r.TryTrack("bob@example.org", "m2", TrackOptions{})
	tr2.Close()
	if st, err := tr2.Wait(context.Background(), tracking.DeliveredToServer); st != tracking.Closed || !errors.Is(err, tracking.ErrClosed) {
		t.Fatalf("Close on a client tracker: %v %v", st, err)
	}
	if tracking.NewMessageTracker("x").Advance(tracking.DeliveredToServer, nil) != nil {
		t.Fatal("Advance refused on a standalone tracker")
	}
}

// TestHookSeesPublicTracker checks that Config.OnStateChange receives the
// same tracker Track returned, with the public state values.
func TestHookSeesPublicTracker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		var same bool
		var tr *tracking.MessageTracker
		r := New(Config{OnStateChange: func(t *tracking.MessageTracker, from, to tracking.MessageState, _ *tracking.Response) {
			same = t == tr
			got = append(got, from.String()+">"+to.String())
		}})
		defer r.Close()
		tr, _ = r.TryTrack("bob@example.org", "m1", TrackOptions{})
		r.ServerAck("bob@example.org", "m1")
		synctest.Wait()
		if !same || len(got) != 1 || got[0] != "IN_TRANSIT>DELIVERED_TO_SERVER" {
			t.Fatalf("hook: same=%v got=%v", same, got)
		}
	})
}

func TestNilTracker(t *testing.T) {
	r := New(Config{})
	defer r.Close()
	if tr := r.Lookup("bob@example.org", "none"); tr != nil {
		t.Fatalf("Lookup of an unknown id = %v, want nil", tr)
	}
}

// TestEvidenceByAddress checks WrittenTo and ServerAckTo: the to attribute
// as written matches the message's conversation in its canonical form and
// in any other form of the same address (parsed then), never another
// conversation's address.
func TestEvidenceByAddress(t *testing.T) {
	r := New(Config{})
	defer r.Close()
	bob, _ := r.TryTrack("bob@example.org", "b1", TrackOptions{})
	phone, _ := r.TryTrack("bob@example.org/phone", "p1", TrackOptions{})
	odd, _ := r.TryTrack("bob@example.org", "b2", TrackOptions{})
	r.ServerAckTo("carol@example.org", "b1")      // another peer's address
	r.ServerAckTo("bob@example.org/phone", "b1")  // the bare conversation's id, from a full address
	r.ServerAckTo("bob@example.org", "p1")        // the private conversation's id, from the bare address
	r.ServerAckTo("bob@example.org/laptop", "p1") // another resource
	if bob.State() != tracking.InTransit || phone.State() != tracking.InTransit {
		t.Fatalf("acks from other addresses moved trackers: %v %v", bob.State(), phone.State())
	}
	r.ServerAckTo("bob@example.org", "b1")
	r.ServerAckTo("bob@example.org/phone", "p1")
	r.ServerAckTo("Bob@EXAMPLE.org", "b2") // not canonical: parsed to bob@example.org
	for _, tr := range []*tracking.MessageTracker{bob, phone, odd} {
		if tr.State() != tracking.DeliveredToServer {
			t.Fatalf("%s: %v after its ack, want DELIVERED_TO_SERVER", tr.ID(), tr.State())
		}
	}
}

// TestWrittenByAddress checks that WrittenTo orders messages like Written:
// a marker for the message written last covers the one written first,
// whatever their registration order, and a foreign address moves nothing.
func TestWrittenByAddress(t *testing.T) {
	r := New(Config{})
	defer r.Close()
	x, _ := r.TryTrack("bob@example.org", "x", TrackOptions{})
	y, _ := r.TryTrack("bob@example.org", "y", TrackOptions{})
	r.WrittenTo("Bob@example.org", "y")
	r.WrittenTo("bob@example.org", "x")   // x is now after y
	r.WrittenTo("carol@example.org", "y") // not bob's address: y keeps its place
	for _, tr := range []*tracking.MessageTracker{x, y} {
		Advance(tr, tracking.DeliveredToRecipient, nil)
	}
	bob, _ := jid.Parse("bob@example.org/phone")
	r.Displayed(bob, "y", "", &tracking.Response{ID: "d1"})
	if x.State() != tracking.DeliveredToRecipient || y.State() != tracking.SeenByRecipient {
		t.Fatalf("marker for y: x %v, y %v; want x (written after y) untouched", x.State(), y.State())
	}
}

// TestConvCache checks that a ConvCache gives Conv's key for any sequence
// of addresses: repeated, alternating, bare and full, and the same
// characters split differently.
func TestConvCache(t *testing.T) {
	var cc ConvCache
	for _, s := range []string{"bob@example.org", "bob@example.org", "bob@example.org/pc", "bob@example.org",
		"room@muc.example.org/nick", "example.org", "bob@example.org/pc", "bob@example.org/pc"} {
		to := jid.MustParse(s)
		if got, want := cc.Conv(to), Conv(to); got != want {
			t.Fatalf("Conv(%s) through the cache = %q, want %q", s, got, want)
		}
	}
}
