package trackcore

import (
	"testing"
	"testing/synctest"
)

// madeChange is a change as OnMade saw it, with the tracker's state then.
type madeChange struct {
	id       string
	from, to State
	shown    State
}

// TestOnMadeBeforeCallbacks: OnMade hears of every change as it is made,
// in the order made, before the new state shows, also while a callback
// does not return; the callbacks then run in the same order.
func TestOnMadeBeforeCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var made []madeChange // written under the registry's lock, read once it is idle
		var called []string
		release := make(chan struct{})
		r := NewRegistry(Config[Response]{
			OnMade: func(tr *MessageTracker, from, to State, _ *Response) {
				made = append(made, madeChange{tr.ID(), from, to, tr.State()})
			},
			OnStateChange: func(tr *MessageTracker, _, to State, _ *Response) {
				if len(called) == 0 {
					<-release
				}
				called = append(called, tr.ID()+" "+to.String())
			},
		})
		track(t, r, bob, "a", TrackOptions{})
		track(t, r, bob, "b", TrackOptions{})
		r.ServerAck(bob, "a") // its callback blocks
		r.ServerAck(bob, "b")
		r.Delivered(bob, "", "b", &Response{ID: "r"})
		r.Lost(bob, "a") // refused: no change
		synctest.Wait()
		want := []madeChange{
			{"a", InTransit, DeliveredToServer, InTransit},
			{"b", InTransit, DeliveredToServer, InTransit},
			{"b", DeliveredToServer, DeliveredToRecipient, DeliveredToServer},
		}
		if len(made) != len(want) {
			t.Fatalf("OnMade saw %v while a callback blocks, want %v", made, want)
		}
		for i := range want {
			if made[i] != want[i] {
				t.Fatalf("OnMade saw %v while a callback blocks, want %v", made, want)
			}
		}
		if len(called) != 0 {
			t.Fatalf("callbacks %v ran past the blocked one", called)
		}
		close(release)
		synctest.Wait()
		wantCalled := []string{"a " + DeliveredToServer.String(), "b " + DeliveredToServer.String(), "b " + DeliveredToRecipient.String()}
		if len(called) != len(wantCalled) {
			t.Fatalf("callbacks %v, want %v", called, wantCalled)
		}
		for i := range wantCalled {
			if called[i] != wantCalled[i] {
				t.Fatalf("callbacks %v, want %v", called, wantCalled)
			}
		}
		r.Close()
		synctest.Wait()
	})
}
