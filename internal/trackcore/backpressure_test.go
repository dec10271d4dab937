package trackcore

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
)

// held returns the changes waiting for or running callbacks.
func held(r *Registry[Response]) int {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.g.held
}

// TestMaxChanges checks maxChanges against the graph: the longest chain of
// state changes (transitions to another state) a tracker can go through.
func TestMaxChanges(t *testing.T) {
	var longest func(s State) int
	longest = func(s State) int {
		best := 0
		for to := State(0); to < NumStates; to++ {
			if d := table[s][to]; d != refused && State(d) != s {
				best = max(best, 1+longest(State(d)))
			}
		}
		return best
	}
	if got := longest(InTransit); got != maxChanges {
		t.Fatalf("longest chain of changes %d, maxChanges %d", got, maxChanges)
	}
}

// TestStuckCallbackBoundsMemory is the measurement of a state-change
// callback that never returns while the application keeps sending: 200,000
// attempted sends with MaxPending = 10, each message acked, receipted and
// displayed at once. The changes held for the callback must stay within
// QueueLimit's bound, and so must the heap; once the callback returns,
// every admitted message's changes run, in order. It logs the numbers.
func TestStuckCallbackBoundsMemory(t *testing.T) {
	const sends, maxPending = 200_000, 10
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var got []string
	r := NewRegistry(Config[Response]{MaxPending: maxPending, OnStateChange: func(tr *MessageTracker, _, to MessageState, _ *Response) {
		select {
		case entered <- struct{}{}:
			<-release // the first callback is stuck until the test ends
		default:
		}
		got = append(got, tr.ID()+">"+to.String())
	}})
	defer r.Close()
	limit, most := QueueLimit(maxPending)

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	admitted, refused, peakHeld := 0, 0, 0
	for i := range sends {
		id := strconv.Itoa(i)
		if _, err := r.TryTrack(bob, id, TrackOptions{}); err != nil {
			refused++ // Client.Send would wait here
		} else {
			admitted++
			r.ServerAck(bob, id)
			r.Delivered(bob, "", id, nil)
			r.Displayed(bob, "", id, "", nil)
		}
		if i == 0 {
			<-entered
		}
		peakHeld = max(peakHeld, held(r))
		if i%2000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	runtime.ReadMemStats(&ms)
	peak = max(peak, ms.HeapAlloc)
	t.Logf("stuck callback, %d attempted sends, MaxPending %d: %d admitted, %d refused; changes held at most %d (limit %d, bound %d); heap %d KiB above the start at peak",
		sends, maxPending, admitted, refused, peakHeld, limit, most, (int64(peak)-int64(base))/1024)
	if peakHeld > most {
		t.Fatalf("%d changes held for a stuck callback, bound %d", peakHeld, most)
	}
	if refused == 0 {
		t.Fatal("no send was held back while the callback was stuck")
	}
	close(release)
	r.Close()
	for held(r) > 0 {
		runtime.Gosched()
	}
	if want := 3 * admitted; len(got) != want {
		t.Fatalf("%d callbacks ran, want %d", len(got), want)
	}
	for i := 0; i < len(got); i += 3 {
		id := strconv.Itoa(i / 3)
		if got[i] != id+">DELIVERED_TO_SERVER" || got[i+1] != id+">DELIVERED_TO_RECIPIENT" || got[i+2] != id+">SEEN_BY_RECIPIENT" {
			t.Fatalf("callbacks out of order at %d: %v", i, got[i:i+3])
		}
	}
}

// TestCallbackSendsMany has a callback send 100 messages with MaxPending =
// 10, each waiting for a slot, while another goroutine (the stream reader)
// reports acks, receipts and markers for what was sent. It must finish:
// the reader never waits for the callbacks, and the callback's own changes
// stay under the queue limit. synctest reports a deadlock as a failure.
func TestCallbackSendsMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, maxPending = 100, 10
		sent := make(chan string, n)
		done := make(chan error, 1)
		var r *Registry[Response]
		r = NewRegistry(Config[Response]{MaxPending: maxPending, OnStateChange: func(tr *MessageTracker, _, to MessageState, _ *Response) {
			if tr.ID() != "start" || to != DeliveredToServer {
				return
			}
			for i := range n {
				id := "cb" + strconv.Itoa(i)
				if _, err := r.Track(context.Background(), bob, id, TrackOptions{}); err != nil {
					done <- err
					return
				}
				sent <- id
			}
			done <- nil
		}})
		defer r.Close()
		go func() { // the reader: evidence for everything the callback sent
			for id := range sent {
				r.ServerAck(bob, id)
				r.Delivered(bob, "", id, nil)
				r.Displayed(bob, "", id, "", nil)
			}
		}()
		const carol = "carol@example.org"
		track(t, r, carol, "start", TrackOptions{})
		r.ServerAck(carol, "start")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(sent)
		synctest.Wait()
		if p := r.Pending(); p != 1 { // "start" is still pending
			t.Fatalf("%d pending, want 1", p)
		}
	})
}

// TestTrackWaitsForCallbacks checks that Track waits while the callbacks lag
// by the queue limit, and goes on once they catch up.
func TestTrackWaitsForCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r := NewRegistry(Config[Response]{MaxPending: 1, OnStateChange: func(*MessageTracker, State, State, *Response) {
			<-release
		}})
		defer r.Close()
		limit, _ := QueueLimit(1)
		i := 0
		for ; held(r) < limit; i++ {
			id := strconv.Itoa(i)
			track(t, r, bob, id, TrackOptions{})
			r.Lost(bob, id)
		}
		admitted := make(chan error, 1)
		go func() {
			_, err := r.Track(context.Background(), bob, "late", TrackOptions{})
			admitted <- err
		}()
		synctest.Wait()
		select {
		case err := <-admitted:
			t.Fatalf("Track returned %v with %d changes held (limit %d)", err, held(r), limit)
		default:
		}
		close(release)
		if err := <-admitted; err != nil {
			t.Fatal(err)
		}
	})
}
