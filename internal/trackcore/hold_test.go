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

// TestReleasePaced: under a stream of evidence, hand-overs by Release are
// paced. The first one after a quiet period, and the next, run at once;
// since the second came within handGap of the first batch, the
// dispatcher then sleeps handGap
// instead of parking, and what the reads queue meanwhile runs after the
// sleep, without waking it. It sleeps again while a sleep gathered
// changes and parks after one that gathered none: the next Release wakes
// it at once. Close ends a sleep at once.
func TestReleasePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		r := holdRegistry(&calls)
		var last *MessageTracker
		for i := range 8 {
			last = track(t, r, bob, strconv.Itoa(i), TrackOptions{})
		}
		var lastDelivered atomic.Bool
		last.OnStateChange(func(_, to MessageState, _ *Response) {
			if to == DeliveredToRecipient {
				lastDelivered.Store(true)
			}
		})
		r.ServerAck(bob, "0") // starts the dispatcher, which then parks
		synctest.Wait()
		time.Sleep(10 * handGap) // a quiet period

		read := func(id string) { // one read of the stream
			r.Hold()
			r.Delivered(bob, "", id, nil)
			r.Release()
		}
		want := func(n int64, what string) {
			t.Helper()
			synctest.Wait()
			if got := calls.Load(); got != n {
				t.Fatalf("%s: %d callbacks, want %d", what, got, n)
			}
		}
		read("0")
		want(2, "after a quiet period")
		time.Sleep(handGap / 4)
		read("1")
		want(3, "the second hand-over within handGap") // then it sleeps
		time.Sleep(handGap / 4)
		read("2")
		time.Sleep(handGap / 4)
		read("3")
		want(3, "reads during the sleep")
		time.Sleep(handGap / 2) // the sleep ends
		want(5, "after the sleep")
		read("4")
		want(5, "a read during the second sleep")
		time.Sleep(handGap)
		want(6, "after the second sleep")
		time.Sleep(handGap) // a third sleep gathers nothing: the dispatcher parks
		want(6, "after an empty sleep")
		if !dispatcher(r) {
			t.Fatal("no dispatcher")
		}
		read("5")
		want(7, "after the dispatcher parked")

		// Close during a sleep: the held change runs at once.
		time.Sleep(handGap / 4)
		read("6") // runs at once, then the dispatcher sleeps
		want(8, "the second hand-over within handGap")
		read("7")
		r.Close()
		synctest.Wait() // no time passes: the sleep ended at once
		if !lastDelivered.Load() {
			t.Fatal("the change read during the sleep did not run at Close")
		}
		if dispatcher(r) {
			t.Fatal("the dispatcher still runs after Close")
		}
	})
}

// TestClosePacedRace: Close at the instant the dispatcher's sleep ends
// (the timer fired, and Close clears pacing and sends a wake-up the
// dispatcher must take) runs every change and leaves no wake-up behind,
// whichever goroutine runs first.
func TestClosePacedRace(t *testing.T) {
	for i := range 100 {
		synctest.Test(t, func(t *testing.T) {
			var calls atomic.Int64
			r := holdRegistry(&calls)
			for k := range 3 {
				track(t, r, bob, strconv.Itoa(k), TrackOptions{})
			}
			r.ServerAck(bob, "0")
			synctest.Wait()
			for _, id := range []string{"0", "1"} { // two hand-overs: it sleeps
				r.Hold()
				r.Delivered(bob, "", id, nil)
				r.Release()
				synctest.Wait()
			}
			r.Hold()
			r.Delivered(bob, "", "2", nil) // gathered by the sleep
			r.Release()
			time.Sleep(handGap) // the timer fires now
			r.Close()
			synctest.Wait()
			if n := calls.Load(); n != 4 {
				t.Fatalf("iteration %d: %d callbacks, want 4", i, n)
			}
			if dispatcher(r) {
				t.Fatalf("iteration %d: the dispatcher still runs after Close", i)
			}
		})
	}
}
