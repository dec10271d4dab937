package trackcore

import (
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// holdRegistry returns a registry whose hook counts its callbacks.
func holdRegistry(calls *atomic.Int64) *Registry[Response] {
	return NewRegistry(Config[Response]{OnStateChange: func(*MessageTracker, MessageState, MessageState, *Response) {
		calls.Add(1)
	}})
}

// TestHoldRelease: changes made while the registry is held wait for
// Release (one wake-up for all of them) and then run in order; without a
// Release they run within two linger periods; a dispatcher that is not
// running is started at once, hold or not; Close runs them at once.
func TestHoldRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		r := holdRegistry(&calls)
		for i := range 3 {
			track(t, r, bob, strconv.Itoa(i), TrackOptions{})
		}
		r.ServerAck(bob, "0") // starts the dispatcher, which then parks
		synctest.Wait()
		if calls.Load() != 1 || !dispatcher(r) {
			t.Fatalf("%d callbacks, dispatcher %v", calls.Load(), dispatcher(r))
		}

		r.Hold()
		r.ServerAck(bob, "1")
		r.Delivered(bob, "", "1", nil)
		r.ServerAck(bob, "2")
		synctest.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d callbacks while held, want 1", n)
		}
		r.Release()
		synctest.Wait()
		if n := calls.Load(); n != 4 {
			t.Fatalf("%d callbacks after Release, want 4", n)
		}
		r.Release() // nothing held: no effect

		// A Release that never comes: the linger tick hands them over.
		r.Hold()
		r.Delivered(bob, "", "2", nil)
		synctest.Wait()
		if n := calls.Load(); n != 4 {
			t.Fatalf("%d callbacks while held, want 4", n)
		}
		time.Sleep(2 * linger)
		synctest.Wait()
		if n := calls.Load(); n != 5 {
			t.Fatalf("%d callbacks two linger periods into a hold, want 5", n)
		}

		// No dispatcher: one is started, hold or not.
		time.Sleep(2 * linger)
		synctest.Wait()
		if dispatcher(r) {
			t.Fatal("dispatcher still running")
		}
		track(t, r, bob, "3", TrackOptions{})
		r.ServerAck(bob, "3")
		synctest.Wait()
		if n := calls.Load(); n != 6 {
			t.Fatalf("%d callbacks, want 6: a held registry without a dispatcher starts one", n)
		}

		// Close hands over what is held.
		r.Delivered(bob, "", "3", nil)
		r.Close()
		synctest.Wait()
		if n := calls.Load(); n < 7 {
			t.Fatalf("%d callbacks after Close, want the held one run", n)
		}
		r.Release()
	})
}
