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

// TestReleasePaced: under a stream of evidence, a Release less than
// handGap after the previous hand-over does not wake the dispatcher: the
// pace timer hands over what every read meanwhile queued, with one
// wake-up, handGap after the previous one. A change that is not held
// (an ack read outside a hold, Close) wakes the dispatcher at once, and
// the pending pace then does nothing.
func TestReleasePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		r := holdRegistry(&calls)
		for i := range 8 {
			track(t, r, bob, strconv.Itoa(i), TrackOptions{})
		}
		r.ServerAck(bob, "0") // starts the dispatcher, which then parks
		synctest.Wait()

		read := func(id string) { // one read of the stream
			r.Hold()
			r.Delivered(bob, "", id, nil)
			r.Release()
		}
		read("0") // after a quiet period: at once
		synctest.Wait()
		if n := calls.Load(); n != 2 {
			t.Fatalf("%d callbacks after the first hand-over, want 2", n)
		}
		time.Sleep(handGap / 4)
		read("1")
		time.Sleep(handGap / 4)
		read("2")
		synctest.Wait()
		if n := calls.Load(); n != 2 {
			t.Fatalf("%d callbacks within handGap of the last hand-over, want 2", n)
		}
		time.Sleep(handGap / 2) // handGap after the first hand-over
		synctest.Wait()
		if n := calls.Load(); n != 4 {
			t.Fatalf("%d callbacks once handGap passed, want 4", n)
		}

		// Deferred again, then a change outside a hold wakes it first.
		read("3")
		synctest.Wait()
		if n := calls.Load(); n != 4 {
			t.Fatalf("%d callbacks, want the hand-over deferred", n)
		}
		r.ServerAck(bob, "4")
		synctest.Wait()
		if n := calls.Load(); n != 6 {
			t.Fatalf("%d callbacks after a change outside a hold, want 6", n)
		}
		time.Sleep(handGap) // the stopped pace timer wakes nobody
		synctest.Wait()
		if n := calls.Load(); n != 6 || !dispatcher(r) {
			t.Fatalf("%d callbacks, dispatcher %v", n, dispatcher(r))
		}
		// The wake-up channel is still in order: the next ones work.
		read("4")
		synctest.Wait()
		r.ServerAck(bob, "5")
		synctest.Wait()
		if n := calls.Load(); n != 8 {
			t.Fatalf("%d callbacks, want 8", n)
		}

		// Close during a deferred hand-over runs the held changes.
		time.Sleep(handGap / 4)
		read("5")
		r.Close()
		synctest.Wait()
		if n := calls.Load(); n < 9 {
			t.Fatalf("%d callbacks after Close, want the held one run", n)
		}
	})
}
