package trackcore

import (
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// dispatcher reports whether the registry's callback goroutine exists.
func dispatcher(r *Registry[Response]) bool {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.g.running
}

// TestRegistryDispatcher checks the life of a registry's callback
// goroutine: one for a stream of changes, gone within two linger periods
// of the last callback, back for the next, and gone at Close.
func TestRegistryDispatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		r := NewRegistry(Config[Response]{OnStateChange: func(tr *MessageTracker, _, to MessageState, _ *Response) {
			got = append(got, tr.ID()+">"+to.String())
			time.Sleep(time.Millisecond) // slow callbacks: changes queue up meanwhile
		}})
		if dispatcher(r) {
			t.Fatal("callback goroutine before any callback")
		}
		var want []string
		for i := range 20 {
			id := strconv.Itoa(i)
			track(t, r, bob, id, TrackOptions{})
			r.ServerAck(bob, id)
			r.Delivered(bob, "", id, nil)
			want = append(want, id+">"+DeliveredToServer.String(), id+">"+DeliveredToRecipient.String())
			time.Sleep(linger / 2) // the callbacks ran; the goroutine waits for more
			synctest.Wait()
			if !dispatcher(r) {
				t.Fatal("callback goroutine gone half a linger period after a callback")
			}
		}
		synctest.Wait()
		if len(got) != len(want) {
			t.Fatalf("callbacks %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("callbacks %v, want %v", got, want)
			}
		}
		time.Sleep(2 * linger)
		synctest.Wait()
		if dispatcher(r) {
			t.Fatal("callback goroutine still there two linger periods after the last callback")
		}

		// It comes back for the next change, and Close ends it at once,
		// after the callbacks Close itself queued.
		track(t, r, bob, "a", TrackOptions{})
		track(t, r, bob, "b", TrackOptions{})
		r.ServerAck(bob, "a")
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if !dispatcher(r) {
			t.Fatal("no callback goroutine for a new change")
		}
		time.Sleep(10 * time.Millisecond)
		got = nil
		r.Close()
		time.Sleep(10 * time.Millisecond) // the callbacks take 1 ms each
		synctest.Wait()
		if dispatcher(r) || len(got) != 2 {
			t.Fatalf("after Close: goroutine %v, callbacks %v", dispatcher(r), got)
		}
	})
}

// TestRegistryCallbacksConcurrentEvidence reports evidence for the same
// trackers from several goroutines: every tracker's callbacks must still
// see its changes in order, from the state the previous one went to.
func TestRegistryCallbacksConcurrentEvidence(t *testing.T) {
	const n = 200
	var mu sync.Mutex
	last := map[*MessageTracker]MessageState{}
	bad := 0
	done := make(chan struct{})
	seen := 0
	r := NewRegistry(Config[Response]{OnStateChange: func(tr *MessageTracker, from, to MessageState, _ *Response) {
		mu.Lock()
		defer mu.Unlock()
		if last[tr] != from {
			bad++
		}
		last[tr] = to
		if to == SeenByRecipient {
			if seen++; seen == n {
				close(done)
			}
		}
		if r := tr.conv().g.reg; r != nil {
			r.Pending() // re-entering the registry must not deadlock
		}
	}})
	defer r.Close()
	for i := range n {
		id := strconv.Itoa(i)
		track(t, r, bob, id, TrackOptions{})
	}
	var wg sync.WaitGroup
	for _, report := range []func(id string){
		func(id string) { r.ServerAck(bob, id) },
		func(id string) { r.Delivered(bob, "", id, nil) },
		func(id string) { r.Displayed(bob, "", id, "", nil) },
	} {
		wg.Go(func() {
			for i := range n {
				report(strconv.Itoa(i))
			}
		})
	}
	wg.Wait()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d callbacks out of order", bad)
	}
}
