package trackcore

import (
	"context"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// TestTrackerLayout: a tracker fits the 24-byte size class, its extra the
// 64-byte one, a queued change takes 32 bytes, and a conversation, with
// the shared extra in it, fits the 144-byte class (review rv-tr24 S1: at
// 336 B, the 352-byte class, a peer with one message pending cost 56 B
// more than before the shared extra; the ring of incoming ids is now
// allocated by the first one).
func TestTrackerLayout(t *testing.T) {
	tr, x, c := unsafe.Sizeof(Tracker[Response]{}), unsafe.Sizeof(extra[Response]{}), unsafe.Sizeof(change[Response]{})
	if tr > 24 || x > 64 || c > 32 {
		t.Fatalf("tracker %d B (want 24), extra %d B (want at most 64), change %d B (want 32)", tr, x, c)
	}
	if conv, in := unsafe.Sizeof(conversation[Response]{}), unsafe.Sizeof(recentIn{}); conv > 144 || in > 160 {
		t.Fatalf("conversation %d B, want at most 144; ring of incoming ids %d B, want 160", conv, in)
	}
}

// TestSharedExtra: trackers without data of their own share their
// conversation's extra, which stays empty while others of the conversation
// get evidence, callbacks, Done and waiters; each of those gets an extra of
// its own, and callbacks run in the order they were added (more of them
// than run's buffer holds).
func TestSharedExtra(t *testing.T) {
	const ncb = 10
	r := NewRegistry(Config[Response]{})
	plain := trackOwn(t, r, bob, TrackOptions{})
	receipt := trackOwn(t, r, bob, TrackOptions{})
	called := trackOwn(t, r, bob, TrackOptions{})
	named := track(t, r, bob, "m1", TrackOptions{Thread: "t1"})
	waited := trackOwn(t, r, bob, TrackOptions{})
	var order []int
	done := make(chan struct{})
	for i := range ncb {
		called.OnStateChange(func(_, to State, _ *Response) {
			order = append(order, i)
			if i == ncb-1 && to == DeliveredToServer {
				close(done)
			}
		})
	}
	ch := receipt.Done()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := waited.Wait(ctx, DeliveredToServer); err == nil {
		t.Fatal("Wait with an ended context returned no error")
	}
	r.Delivered(bob, "", receipt.ID(), &Response{ID: "r"})
	r.ServerAck(bob, called.ID())
	r.ServerAck(bob, waited.ID()) // closes the channel the Wait left
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the callbacks did not run")
	}
	if got := receipt.Response(); got == nil || got.ID != "r" {
		t.Fatalf("receipt's response %+v", got)
	}
	for i, n := range order {
		if i != n {
			t.Fatalf("callbacks ran in order %v, want 0 to %d", order, ncb-1)
		}
	}
	if len(order) != ncb {
		t.Fatalf("%d callbacks ran, want %d", len(order), ncb)
	}
	select {
	case <-ch:
		t.Fatal("Done closed before tracking ended")
	default:
	}
	r.g.mu.Lock()
	c := plain.conv()
	shared := c.shared
	own := []*MessageTracker{receipt, called, named, waited}
	for _, tr := range own {
		if tr.x.Load() == &c.shared || tr.conv() != c {
			t.Errorf("tracker %s: own extra %t, conversation %p (want %p)", tr.ID(), tr.x.Load() != &c.shared, tr.conv(), c)
		}
	}
	r.g.mu.Unlock()
	if plain.x.Load() != &c.shared || shared != (extra[Response]{c: c}) {
		t.Fatalf("shared extra %+v, plain tracker's %p (shared %p)", shared, plain.x.Load(), &c.shared)
	}
	if plain.Response() != nil || plain.ID() == "" || plain.To() != bob || named.ID() != "m1" {
		t.Fatalf("plain: response %v, id %q, to %q; named id %q", plain.Response(), plain.ID(), plain.To(), named.ID())
	}
}

// TestExtraSwapRace: ID, To and State read without the lock while the
// tracker's extra replaces the shared one (run with -race).
func TestExtraSwapRace(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	var trs []*MessageTracker
	for range 50 {
		trs = append(trs, trackOwn(t, r, bob, TrackOptions{}), track(t, r, bob, newID(), TrackOptions{Thread: "t"}))
	}
	ids := make([]string, len(trs))
	for i, tr := range trs {
		ids[i] = tr.ID()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i, tr := range trs {
			if tr.ID() != ids[i] || tr.To() != bob || tr.Standalone() {
				t.Errorf("tracker %d: id %q (want %q), to %q", i, tr.ID(), ids[i], tr.To())
			}
			_ = tr.State()
		}
	}()
	go func() {
		defer wg.Done()
		for i, tr := range trs {
			switch i % 3 {
			case 0:
				tr.OnStateChange(func(State, State, *Response) {})
			case 1:
				tr.Done()
			case 2:
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				tr.Wait(ctx, SeenByRecipient)
			}
		}
	}()
	for _, id := range ids {
		r.Delivered(bob, "", id, &Response{ID: id})
	}
	wg.Wait()
	for i, tr := range trs {
		if got := tr.Response(); got == nil || got.ID != ids[i] {
			t.Fatalf("tracker %d: response %+v", i, got)
		}
	}
	r.Close()
}
