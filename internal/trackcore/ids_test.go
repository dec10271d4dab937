package trackcore

import (
	"encoding/base64"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"
)

// trackOwn registers a message under an id the registry makes.
func trackOwn(t *testing.T, r *Registry[Response], to string, o TrackOptions) *MessageTracker {
	t.Helper()
	return track(t, r, to, "", o)
}

// TestOwnIDs: the registry's own ids are distinct, unpredictable-looking
// 22-character strings that evidence finds, only in their conversation and
// only while pending; ID keeps answering after the tracker settled.
func TestOwnIDs(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := trackOwn(t, r, bob, TrackOptions{})
	b := trackOwn(t, r, bob, TrackOptions{})
	c := trackOwn(t, r, "carol@example.org", TrackOptions{})
	ida, idb, idc := a.ID(), b.ID(), c.ID()
	if len(ida) != ownIDLen || ida == idb || idb == idc || ida == idc {
		t.Fatalf("ids %q %q %q", ida, idb, idc)
	}
	if a.ID() != ida {
		t.Fatalf("ID changed: %q, then %q", ida, a.ID())
	}
	if r.Find(ida) != a || r.Lookup(bob, idb) != b || r.Lookup(bob, idc) != nil {
		t.Fatal("own ids not found in their conversation")
	}
	r.Delivered("carol@example.org", "", ida, nil) // another conversation
	r.ServerAck(bob, ida)
	r.Delivered(bob, "", idb, nil)
	r.ErrorReply(jid.MustParse("carol@example.org"), idc, &Response{Err: errReply})
	wantStates(t, []*MessageTracker{a, b, c}, DeliveredToServer, DeliveredToRecipient, Error)
	r.Displayed(bob, "", idb, "", nil)
	if !b.Settled() || r.Find(idb) != nil || b.ID() != idb {
		t.Fatalf("settled: %v, found %v, id %q want %q", b.Settled(), r.Find(idb) != nil, b.ID(), idb)
	}
	r.Delivered(bob, "", idb, nil) // late evidence changes nothing
	wantStates(t, []*MessageTracker{b}, SeenByRecipient)
}

// TestOwnIDFormat: an own id is the base64url of one block, read back to
// its number, and strings that are not own ids do not parse.
func TestOwnIDFormat(t *testing.T) {
	k := newOwnIDs()
	for _, n := range []uint64{0, 1, 255, 1 << 32, 1<<64 - 1, 0x0123456789abcdef} {
		id := k.format(n)
		blk, err := base64.RawURLEncoding.Strict().DecodeString(id)
		if err != nil || len(blk) != 16 || len(id) != ownIDLen {
			t.Fatalf("format(%d) = %q: %v, %d bytes", n, id, err, len(blk))
		}
		if got, ok := k.parse(id); !ok || got != n {
			t.Fatalf("parse(format(%d)) = %d, %v", n, got, ok)
		}
		if _, ok := newOwnIDs().parse(id); ok {
			t.Fatalf("another key parsed %q", id)
		}
		for _, bad := range []string{id[:20] + "\r\n", id[:10] + "\n" + id[11:]} { // base64 skips line breaks
			if got, ok := k.parse(bad); ok {
				t.Fatalf("parse(%q) = %d", bad, got)
			}
		}
	}
	for _, id := range []string{"", "m1", "AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAA=A", "AAAAAAAAAAAAAAAAAAAA\xffA", "AAAAAAAAAAAAAAAAAAAAAAA"} {
		if n, ok := k.parse(id); ok {
			t.Fatalf("parse(%q) = %d", id, n)
		}
	}
}

// TestOwnIDExact: evidence must echo an own id exactly. The last of the 22
// characters carries 4 bits that no byte uses; a lenient decoder reads the
// same block from 16 strings, of which only the one written counts.
func TestOwnIDExact(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := trackOwn(t, r, bob, TrackOptions{})
	id := []byte(a.ID())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := id[len(id)-1]
	for i := range len(alphabet) {
		if alphabet[i] == last {
			id[len(id)-1] = alphabet[i^1]
		}
	}
	r.Delivered(bob, "", string(id), nil)
	other := []byte(a.ID())
	other[5] = alphabet[(strings.IndexByte(alphabet, other[5])+1)%len(alphabet)]
	r.ServerAck(bob, string(other))
	wantStates(t, []*MessageTracker{a}, InTransit)
}

// TestOwnIDGivenAgain: a caller may give an own id as its message's id (a
// retry of a Send): refused while that id is pending, taken as any other id
// once it settled, and then evidence reaches the new tracker only.
func TestOwnIDGivenAgain(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	a := trackOwn(t, r, bob, TrackOptions{})
	id := a.ID()
	if _, err := r.TryTrack(bob, id, TrackOptions{}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("an own pending id given again: %v", err)
	}
	r.Lost(bob, id)
	again := track(t, r, bob, id, TrackOptions{})
	if again.ID() != id || r.Find(id) != again {
		t.Fatalf("retry: id %q, found %v", again.ID(), r.Find(id) == again)
	}
	r.Delivered(bob, "", id, nil)
	wantStates(t, []*MessageTracker{a, again}, Aborted, DeliveredToRecipient)
	if _, err := r.TryTrack(bob, id, TrackOptions{}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("a pending foreign id given again: %v", err)
	}
}

// TestOwnIDsOfAnotherRegistry: another registry's ids (another process, or
// this one before a restart) are foreign here, and ours are nothing there.
func TestOwnIDsOfAnotherRegistry(t *testing.T) {
	r1 := NewRegistry(Config[Response]{})
	r2 := NewRegistry(Config[Response]{})
	a := trackOwn(t, r1, bob, TrackOptions{})
	b := trackOwn(t, r2, bob, TrackOptions{}) // the same number in r2
	if a.ID() == b.ID() {
		t.Fatal("two registries made the same id")
	}
	r2.Delivered(bob, "", a.ID(), nil)
	wantStates(t, []*MessageTracker{a, b}, InTransit, InTransit)
	moved := track(t, r2, bob, a.ID(), TrackOptions{})
	r2.Delivered(bob, "", a.ID(), nil)
	wantStates(t, []*MessageTracker{a, b, moved}, InTransit, InTransit, DeliveredToRecipient)
}

// TestNumsFindAfterSweeps: trackers settled in the middle are swept from
// inside byNum, and every pending one is still found by its id, every
// settled one is not.
func TestNumsFindAfterSweeps(t *testing.T) {
	r := NewRegistry(Config[Response]{MaxPending: -1})
	const n = 5000
	ts := make([]*MessageTracker, n)
	ids := make([]string, n)
	for i := range ts {
		ts[i] = trackOwn(t, r, bob, TrackOptions{})
		ids[i] = ts[i].ID()
	}
	for i := range ts {
		if i%7 != 3 {
			r.Lost(bob, ids[i])
		}
	}
	r.g.mu.Lock()
	held, dead := len(r.byNum.ts), r.byNum.dead
	r.g.mu.Unlock()
	if held > 2*(n/7+1) || dead > held/2 {
		t.Fatalf("byNum holds %d (%d settled) for %d pending", held, dead, r.Pending())
	}
	for i, tr := range ts {
		if got := r.Find(ids[i]); (got == tr) != (i%7 == 3) {
			t.Fatalf("tracker %d (pending %v): found %v", i, i%7 == 3, got != nil)
		}
	}
}

// TestWindowsInRegistrationOrder: trackers with the registry's window end
// it in registration order, each at its own registration time plus the
// window, among trackers with windows of their own and none.
func TestWindowsInRegistrationOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(Config[Response]{Window: 10 * time.Second})
		first := trackOwn(t, r, bob, TrackOptions{})
		none := trackOwn(t, r, bob, TrackOptions{Window: -1})
		long := trackOwn(t, r, bob, TrackOptions{Window: time.Minute})
		time.Sleep(3 * time.Second)
		short := trackOwn(t, r, bob, TrackOptions{Window: time.Second})
		second := trackOwn(t, r, bob, TrackOptions{})
		sameMs := trackOwn(t, r, bob, TrackOptions{})
		time.Sleep(2 * time.Second) // at 5 s
		synctest.Wait()
		wantStates(t, []*MessageTracker{first, short, second}, InTransit, TimedOut, InTransit)
		time.Sleep(5*time.Second - time.Millisecond) // at 10 s less 1 ms
		synctest.Wait()
		if first.Settled() {
			t.Fatal("first window ended early")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		wantStates(t, []*MessageTracker{first, second, sameMs}, TimedOut, InTransit, InTransit)
		time.Sleep(3*time.Second - time.Millisecond) // at 13 s less 1 ms
		synctest.Wait()
		if second.Settled() || sameMs.Settled() {
			t.Fatal("second window ended early")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		wantStates(t, []*MessageTracker{second, sameMs, long, none}, TimedOut, TimedOut, InTransit, InTransit)
		time.Sleep(time.Minute)
		synctest.Wait()
		wantStates(t, []*MessageTracker{long, none}, TimedOut, InTransit)
		r.g.mu.Lock()
		live, marks, heap := r.timers.live, len(r.timers.marks), len(r.timers.heap)
		r.g.mu.Unlock()
		if live != 0 || marks > 1 || heap != 0 {
			t.Fatalf("timers hold %d pending, %d marks, %d in the heap", live, marks, heap)
		}
		r.Close()
	})
}

// TestWindowsAfterSweeps: the timers keep their place in byNum when it is
// swept from inside, and the marks follow the pending trackers.
func TestWindowsAfterSweeps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(Config[Response]{Window: time.Minute, MaxPending: -1})
		var kept []*MessageTracker
		for i := range 3000 {
			tr := trackOwn(t, r, bob, TrackOptions{Window: -1 + 2*time.Duration(i%2)*time.Hour})
			if i%100 == 0 {
				kept = append(kept, trackOwn(t, r, bob, TrackOptions{}))
			}
			if i%3 != 0 {
				r.Lost(bob, tr.ID())
			}
			time.Sleep(10 * time.Millisecond)
		}
		r.g.mu.Lock()
		marks := len(r.timers.marks)
		r.g.mu.Unlock()
		if marks > len(kept) {
			t.Fatalf("%d marks for %d trackers with the registry's window", marks, len(kept))
		}
		synctest.Wait()
		for i, tr := range kept {
			// Registered at i s; the window is a minute, and 30 s passed.
			if want := i+60 <= 30; tr.Settled() != want {
				t.Fatalf("tracker %d settled %v at 30 s", i, tr.Settled())
			}
		}
		time.Sleep(45 * time.Second) // at 75 s: those registered before 15 s ended
		synctest.Wait()
		for i, tr := range kept {
			if want := i+60 <= 75; tr.Settled() != want {
				t.Fatalf("tracker %d settled %v at 75 s", i, tr.Settled())
			}
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		r.g.mu.Lock()
		live, heap, dead := r.timers.live, len(r.timers.heap), r.timers.hdead
		r.g.mu.Unlock()
		if live != 0 || heap != 0 || dead != 0 {
			t.Fatalf("timers hold %d pending, heap %d (%d settled)", live, heap, dead)
		}
		r.Close()
	})
}

// TestOwnIDMemory: a pending tracker with the registry's own id and window
// takes 24 bytes (its size class), and the registry about 19 more per pending
// tracker (byNum, the conversation's order, their slack).
func TestOwnIDMemory(t *testing.T) {
	if per := heapPerTracker(t, 100_000, func(int) string { return bob }, false); per > 48 {
		t.Errorf("%d B of heap per pending tracker, want at most 48", per)
	}
}

// TestOnePerPeerMemory: with one message pending per peer, the peer's
// conversation counts: about 205 B per pending message, the conversation
// in the 144-byte class without its ring of incoming ids (349 B with the
// ring in it, 412 B when the shared extra took it to the 352-byte class:
// review rv-tr24 S1).
func TestOnePerPeerMemory(t *testing.T) {
	const n = 20_000
	peers := peerJIDs(n)
	if per := heapPerTracker(t, n, func(i int) string { return peers[i] }, false); per > 240 {
		t.Errorf("%d B of heap per pending tracker with one per peer, want at most 240", per)
	}
}

// TestOnePerPeerIncomingMemory: with one message pending per peer and one
// received from each, the conversation's ring of incoming ids counts too:
// about 370 B per pending message, 160 more than without (the ring's
// size class).
func TestOnePerPeerIncomingMemory(t *testing.T) {
	const n = 20_000
	peers := peerJIDs(n)
	per := heapPerTracker(t, n, func(i int) string { return peers[i] }, true)
	if per > 400 {
		t.Errorf("%d B of heap per pending tracker with one per peer and one incoming message from each, want at most 400", per)
	}
}

// peerJIDs returns n distinct peers' bare JIDs.
func peerJIDs(n int) []string {
	peers := make([]string, n)
	for i := range peers {
		peers[i] = "peer" + strconv.Itoa(i) + "@example.org"
	}
	return peers
}

// heapPerTracker returns the heap, in bytes per tracker, that a registry
// with an hour's window holds after n trackers with its own ids were
// registered, the ith to conversation to(i), and, if incoming, a message
// (id "x", not allocated) was received from to(i) after each.
func heapPerTracker(t *testing.T, n int, to func(int) string, incoming bool) int64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := NewRegistry(Config[Response]{MaxPending: -1, Window: time.Hour})
	for i := range n {
		if _, err := r.TryTrack(to(i), "", TrackOptions{}); err != nil {
			t.Fatal(err)
		}
		if incoming {
			r.Incoming(to(i), "", "x")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(r)
	return (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(n)
}

// TestForeignIDAndThread: a foreign id and the thread share one string in
// the tracker's extra; each reads back as given, with or without the other.
func TestForeignIDAndThread(t *testing.T) {
	r := NewRegistry(Config[Response]{})
	both := track(t, r, bob, "m1", TrackOptions{Thread: "t1"})
	idOnly := track(t, r, bob, "m2", TrackOptions{})
	threadOnly := trackOwn(t, r, bob, TrackOptions{Thread: "t3"})
	r.g.mu.Lock()
	got := [][2]string{{both.ID(), both.thread()}, {idOnly.ID(), idOnly.thread()}, {"", threadOnly.thread()}}
	r.g.mu.Unlock()
	want := [][2]string{{"m1", "t1"}, {"m2", ""}, {"", "t3"}}
	if got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("(id, thread) %q, want %q", got, want)
	}
	if len(threadOnly.ID()) != ownIDLen {
		t.Fatalf("own id %q beside a thread", threadOnly.ID())
	}
	if s := NewStandalone[Response]("solo"); s.ID() != "solo" || s.thread() != "" {
		t.Fatalf("standalone: id %q, thread %q", s.ID(), s.thread())
	}
	if _, err := r.TryTrack(bob, strings.Repeat("x", maxIDLen+1), TrackOptions{}); !errors.Is(err, ErrIDTooLong) {
		t.Fatalf("an id of %d bytes: %v", maxIDLen+1, err)
	}
}

// TestMarksFollowPending: one message that stays pending does not keep a
// registration mark for every millisecond in which messages that settled
// since were registered (review rv-mem S1: 100,000 marks for 1 pending).
func TestMarksFollowPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(Config[Response]{MaxPending: -1})
		stuck := trackOwn(t, r, bob, TrackOptions{})
		var late *MessageTracker
		for i := range 20_000 {
			tr := trackOwn(t, r, bob, TrackOptions{})
			if i == 10_000 {
				late = tr // pending too, from the middle
				continue
			}
			r.Delivered(bob, "", tr.ID(), nil)
			r.Displayed(bob, "", tr.ID(), "", nil)
			time.Sleep(time.Millisecond)
		}
		r.g.mu.Lock()
		marks, pending := len(r.timers.marks), r.pending
		r.g.mu.Unlock()
		if pending != 2 || marks > 2*pending+16 {
			t.Fatalf("%d marks for %d pending", marks, pending)
		}
		time.Sleep(DefaultWindow - 19*time.Second) // at 301 s: stuck's window ended, late's (310 s) not
		synctest.Wait()
		wantStates(t, []*MessageTracker{stuck, late}, TimedOut, InTransit)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		wantStates(t, []*MessageTracker{late}, TimedOut)
	})
}
