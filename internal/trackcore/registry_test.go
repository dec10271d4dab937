package trackcore

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"
)

const bob = "bob@example.org"

func track(t *testing.T, r *Registry[Response], to, id string, o TrackOptions) *MessageTracker {
	t.Helper()
	tr, err := r.TryTrack(to, id, o)
	if err != nil {
		t.Fatalf("TryTrack(%s, %s): %v", to, id, err)
	}
	return tr
}

func states(trs ...*MessageTracker) []MessageState {
	out := make([]MessageState, len(trs))
	for i, tr := range trs {
		out[i] = tr.State()
	}
	return out
}

func wantStates(t *testing.T, trs []*MessageTracker, want ...MessageState) {
	t.Helper()
	got := states(trs...)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("states %v, want %v", got, want)
		}
	}
}

func TestRegistryEvidence(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	m := track(t, r, bob, "m1", TrackOptions{})
	r.ServerAck(bob, "m1")
	r.Delivered("alice@example.org", "", "m1", nil) // another conversation
	r.Delivered(bob, "", "unknown", nil)
	wantStates(t, []*MessageTracker{m}, DeliveredToServer)
	r.Delivered(bob, "", "m1", &Response{ID: "r1"})
	r.ServerAck(bob, "m1") // a late ack does not pull back
	wantStates(t, []*MessageTracker{m}, DeliveredToRecipient)
	if m.Response().ID != "r1" {
		t.Fatalf("response %+v", m.Response())
	}
	r.Displayed(bob, "", "m1", "", nil)
	wantStates(t, []*MessageTracker{m}, SeenByRecipient)
	if !m.Settled() || r.Pending() != 0 || r.Lookup(bob, "m1") != nil || len(r.convs) != 0 || r.timers.live != 0 {
		t.Fatalf("settled tracker still held: pending=%d convs=%d heap=%d", r.Pending(), len(r.convs), r.timers.live)
	}
}

func TestRegistryDuplicateID(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	track(t, r, bob, "m1", TrackOptions{})
	if _, err := r.TryTrack("carol@example.org", "m1", TrackOptions{}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate id: %v", err)
	}
}

func TestDisplayedUpToHere(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := track(t, r, bob, "a", TrackOptions{})
	b := track(t, r, bob, "b", TrackOptions{})
	c := track(t, r, bob, "c", TrackOptions{})
	other := track(t, r, "carol@example.org", "x", TrackOptions{})
	r.Delivered(bob, "", "a", nil)
	r.Displayed(bob, "", "b", "", nil)
	wantStates(t, []*MessageTracker{a, b, c, other}, SeenByRecipient, SeenByRecipient, InTransit, InTransit)
	r.Displayed(bob, "", "a", "", nil) // older than the displayed point: nothing to do
	r.Delivered(bob, "", "b", nil)     // a receipt after the marker does not downgrade
	wantStates(t, []*MessageTracker{a, b, c}, SeenByRecipient, SeenByRecipient, InTransit)
}

func TestDisplayedNamesIncomingMessage(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := track(t, r, bob, "a", TrackOptions{})
	r.Incoming(bob, "", "their-1")
	b := track(t, r, bob, "b", TrackOptions{})
	r.Delivered(bob, "", "a", nil)
	r.Displayed(bob, "", "their-1", "", nil)
	wantStates(t, []*MessageTracker{a, b}, SeenByRecipient, InTransit)
	r.Displayed(bob, "", "never-seen", "", nil)
	wantStates(t, []*MessageTracker{b}, InTransit)
}

func TestDisplayedThread(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := track(t, r, bob, "a", TrackOptions{Thread: "t1"})
	b := track(t, r, bob, "b", TrackOptions{Thread: "t2"})
	c := track(t, r, bob, "c", TrackOptions{Thread: "t1"})
	r.Delivered(bob, "", "a", nil)
	r.Delivered(bob, "", "b", nil)
	r.Displayed(bob, "", "c", "t1", nil)
	wantStates(t, []*MessageTracker{a, b, c}, SeenByRecipient, DeliveredToRecipient, SeenByRecipient)
	r.Displayed(bob, "", "b", "", nil)
	wantStates(t, []*MessageTracker{b}, SeenByRecipient)
}

func TestErrorReplySource(t *testing.T) {
	reply := &Response{Err: errReply}
	cases := []struct {
		from string
		want MessageState
	}{
		{"bob@example.org/phone", Error},
		{"bob@example.org", Error},
		{"example.org", Error},
		{"", Error},
		{"mallory@example.org", InTransit},
		{"evil.example", InTransit},
		{"example.org/resource", InTransit},
	}
	for _, tc := range cases {
		t.Run(tc.from, func(t *testing.T) {
			r := NewRegistry(Config[Response]{})
			m := track(t, r, bob, "m1", TrackOptions{})
			var from jid.JID
			if tc.from != "" {
				from = jid.MustParse(tc.from)
			}
			r.ErrorReply(from, "m1", reply)
			if m.State() != tc.want {
				t.Fatalf("state %v, want %v", m.State(), tc.want)
			}
		})
	}
}

func TestErrorThenProof(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	m := track(t, r, bob, "m1", TrackOptions{})
	r.ErrorReply(jid.MustParse(bob), "m1", &Response{Err: errReply})
	if _, stop, resp, _ := m.Wait(context.Background(), DeliveredToRecipient); stop != Failed || resp == nil || resp.Err != errReply {
		t.Fatalf("Wait in ERROR: stop %v", stop)
	}
	r.Delivered(bob, "", "m1", nil)
	wantStates(t, []*MessageTracker{m}, DeliveredToRecipient)
	r.ErrorReply(jid.MustParse(bob), "m1", &Response{Err: errReply}) // late error: ignored
	wantStates(t, []*MessageTracker{m}, DeliveredToRecipient)
}

func TestWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes []MessageState
		r := NewRegistry(Config[Response]{Window: 30 * time.Second, OnStateChange: func(_ *MessageTracker, _, to MessageState, _ *Response) {
			changes = append(changes, to)
		}})
		pending := track(t, r, bob, "a", TrackOptions{})
		acked := track(t, r, bob, "b", TrackOptions{})
		delivered := track(t, r, bob, "c", TrackOptions{})
		failed := track(t, r, bob, "d", TrackOptions{})
		long := track(t, r, bob, "e", TrackOptions{Window: time.Hour})
		none := track(t, r, bob, "f", TrackOptions{Window: -1})
		r.ServerAck(bob, "b")
		r.Delivered(bob, "", "c", nil)
		r.ErrorReply(jid.JID{}, "d", &Response{Err: errReply})

		time.Sleep(29 * time.Second)
		synctest.Wait()
		if pending.Settled() {
			t.Fatal("window ended early")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		wantStates(t, []*MessageTracker{pending, acked, delivered, failed, long}, TimedOut, TimedOut, DeliveredToRecipient, Error, InTransit)
		for _, tr := range []*MessageTracker{pending, acked, delivered, failed} {
			if !tr.Settled() {
				t.Fatalf("%s not settled", tr.ID())
			}
		}
		if _, stop, _, _ := delivered.Wait(context.Background(), SeenByRecipient); stop != Expired {
			t.Fatalf("Wait past the window: stop %v", stop)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if long.State() != TimedOut || none.Settled() || r.Pending() != 1 {
			t.Fatalf("long=%v none settled=%v pending=%d", long.State(), none.Settled(), r.Pending())
		}
		want := []MessageState{DeliveredToServer, DeliveredToRecipient, Error, TimedOut, TimedOut, TimedOut}
		if len(changes) != len(want) {
			t.Fatalf("changes %v, want %v", changes, want)
		}
		r.Close()
		synctest.Wait()
		if none.State() != Closed || r.timers.live != 0 {
			t.Fatalf("after Close: %v, heap %d", none.State(), r.timers.live)
		}
	})
}

func TestMaxPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(Config[Response]{MaxPending: 2})
		a := track(t, r, bob, "a", TrackOptions{})
		track(t, r, bob, "b", TrackOptions{})
		if _, err := r.TryTrack(bob, "c", TrackOptions{}); !errors.Is(err, ErrTooManyPending) {
			t.Fatalf("TryTrack at the bound: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := r.Track(ctx, bob, "c", TrackOptions{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Track at the bound: %v", err)
		}
		got := make(chan error, 1)
		go func() {
			_, err := r.Track(context.Background(), bob, "c", TrackOptions{})
			got <- err
		}()
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("Track did not wait: %v", err)
		default:
		}
		a.Close()
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	})
}

func TestShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(Config[Response]{})
		m := track(t, r, bob, "a", TrackOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown with pending: %v", err)
		}
		if _, err := r.TryTrack(bob, "b", TrackOptions{}); !errors.Is(err, ErrShutdown) {
			t.Fatalf("TryTrack after Shutdown: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Shutdown(context.Background()) }()
		r.Displayed(bob, "", "a", "", nil)
		if err := <-done; err != nil || m.State() != SeenByRecipient {
			t.Fatalf("Shutdown: %v, state %v", err, m.State())
		}
	})
}

// TestConversationMemoryFollowsPending checks that settling trackers in any
// order keeps the per-conversation order list proportional to what is pending.
func TestConversationMemoryFollowsPending(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	keep := track(t, r, bob, "keep", TrackOptions{})
	for i := range 10000 {
		id := "m" + strconv.Itoa(i)
		track(t, r, bob, id, TrackOptions{}).Close()
	}
	c := r.convs[bob]
	if len(c.order) > 40 || keep.Settled() {
		t.Fatalf("order holds %d entries for 1 pending tracker", len(c.order))
	}
}

// TestRoomTakesNoDirectEvidence checks TrackOptions.Room: a private message
// from an occupant (bare JID = the room's) cannot move a group-chat
// message, while acks, error replies and direct Advance still apply.
func TestRoomTakesNoDirectEvidence(t *testing.T) {
	const room = "ops@conference.example.org"
	r := NewRegistry(Config[Response]{})
	a := track(t, r, room, "g1", TrackOptions{Room: true})
	b := track(t, r, room, "g2", TrackOptions{Room: true})
	r.Incoming(room, "", "pm1")
	r.Delivered(room, "", "g1", nil)
	r.Displayed(room, "", "g2", "", nil)
	r.Displayed(room, "", "pm1", "", nil)
	wantStates(t, []*MessageTracker{a, b}, InTransit, InTransit)
	r.ServerAck(room, "g1")
	a.Advance(DeliveredToRecipient, nil) // the reflection, as package muc applies it
	r.ErrorReply(jid.MustParse(room), "g2", &Response{Err: errors.New("not-acceptable")})
	wantStates(t, []*MessageTracker{a, b}, DeliveredToRecipient, Error)
}

// TestDisplayedThreadWalksOnlyNewMessages checks the per-thread marker
// position: a later marker of the thread covers the thread's new messages
// (the walk starts after the last marker's position), an older or repeated
// one changes nothing, and other threads are untouched throughout.
func TestDisplayedThreadWalksOnlyNewMessages(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	other := track(t, r, bob, "o1", TrackOptions{Thread: "t2"})
	a := track(t, r, bob, "a", TrackOptions{Thread: "t1"})
	r.Incoming(bob, "", "in1")
	b := track(t, r, bob, "b", TrackOptions{Thread: "t1"})
	r.Delivered(bob, "", "o1", nil)
	r.Delivered(bob, "", "a", nil)
	r.Displayed(bob, "", "in1", "t1", nil)
	wantStates(t, []*MessageTracker{other, a, b}, DeliveredToRecipient, SeenByRecipient, InTransit)
	r.Displayed(bob, "", "in1", "t1", nil) // repeated
	r.Displayed(bob, "", "a", "t1", nil)   // older
	wantStates(t, []*MessageTracker{other, b}, DeliveredToRecipient, InTransit)
	c := track(t, r, bob, "c", TrackOptions{Thread: "t1"})
	r.Delivered(bob, "", "b", nil)
	r.Displayed(bob, "", "c", "t1", nil)
	wantStates(t, []*MessageTracker{other, b, c}, DeliveredToRecipient, SeenByRecipient, SeenByRecipient)
	if n := len(r.convs[bob].mk.marks); n != 1 {
		t.Fatalf("%d thread marks", n)
	}
	for i := range 2 * maxThreadMarks { // peers choose thread ids: bounded
		r.Displayed(bob, "", "o1", strconv.Itoa(i), nil)
	}
	if n := len(r.convs[bob].mk.marks); n > maxThreadMarks {
		t.Fatalf("%d thread marks", n)
	}
	wantStates(t, []*MessageTracker{other}, DeliveredToRecipient)
}

// TestIndexShrinksAfterBurst: once a burst of pending trackers settled,
// the registry gives back the memory of its index (a Go map keeps the
// buckets of its largest size; 100,000 entries take about 2 MiB).
func TestIndexShrinksAfterBurst(t *testing.T) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewRegistry(Config[Response]{MaxPending: -1})
	for _, id := range ids {
		if _, err := r.TryTrack(bob, id, TrackOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids[:n-10] {
		r.Lost(bob, id)
	}
	if got := r.Pending(); got != 10 {
		t.Fatalf("%d pending, want 10", got)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if kept := int64(after.HeapAlloc) - int64(before.HeapAlloc); kept > 512<<10 {
		t.Errorf("the registry keeps %d KiB after %d of %d trackers settled, want under 512 KiB", kept>>10, n-10, n)
	}
	for _, id := range ids[n-10:] {
		if r.Lookup(bob, id) == nil {
			t.Fatalf("pending %s not found after the index shrank", id)
		}
		r.Lost(bob, id)
	}
	if got := r.Pending(); got != 0 {
		t.Fatalf("%d pending after the last ones settled, want 0", got)
	}
	runtime.KeepAlive(r)
	runtime.KeepAlive(ids)
}

// TestOrderShrinksAfterBurst: a conversation whose burst mostly settled
// (an offline recipient: many receipts never come) gives back the array
// of the burst, though trimming from the front lowered its capacity.
func TestOrderShrinksAfterBurst(t *testing.T) {
	r := NewRegistry(Config[Response]{MaxPending: -1})
	const n, keep = 110_000, 10_000
	for i := range n {
		if _, err := r.TryTrack(bob, strconv.Itoa(i), TrackOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n - keep {
		r.Lost(bob, strconv.Itoa(i))
	}
	r.g.mu.Lock()
	c := r.convs[bob]
	l, cp := len(c.order), cap(c.order)
	r.g.mu.Unlock()
	if l != keep {
		t.Fatalf("order holds %d, want %d", l, keep)
	}
	// A slice trimmed from the front hides the array before it; what
	// shows is the capacity after it (19,808 here). A copy's capacity
	// is close to its length.
	if cp > keep*3/2 {
		t.Errorf("order of %d has a capacity of %d: still the burst's array", l, cp)
	}
}

// TestIndexCopyBounded: the index is not copied while more than
// maxIndexCopy trackers are pending (the copy runs under the lock that
// Send and the receive path wait for), nor while Close settles everything.
func TestIndexCopyBounded(t *testing.T) {
	const n = 100_000
	r := NewRegistry(Config[Response]{MaxPending: -1})
	for i := range n {
		if _, err := r.TryTrack(bob, strconv.Itoa(i), TrackOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n - 2*maxIndexCopy {
		r.Lost(bob, strconv.Itoa(i))
	}
	r.g.mu.Lock()
	peak, left := r.peak, len(r.index)
	r.g.mu.Unlock()
	if left != 2*maxIndexCopy || peak != n {
		t.Fatalf("index of %d, peak %d: want %d and no copy (peak %d) above maxIndexCopy", left, peak, 2*maxIndexCopy, n)
	}
	r.Close()
	r.g.mu.Lock()
	peak = r.peak
	r.g.mu.Unlock()
	if peak != n {
		t.Fatalf("peak %d after Close: the index was copied while Close settled everything", peak)
	}
	if got := r.Pending(); got != 0 {
		t.Fatalf("%d pending after Close", got)
	}
}
