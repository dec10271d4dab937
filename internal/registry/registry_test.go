package registry

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

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
