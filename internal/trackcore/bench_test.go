package trackcore

import (
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
)

// newID returns a 16-character id, the shape NewID makes (SendOnce, package
// muc and the gateway use it; Send's own ids are the registry's).
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// BenchmarkPendingMemory reports the heap held per pending tracker, with
// b.N trackers pending at once to one peer and spread over 100 peers, and
// with one and two pending per peer (b.N and b.N/2 peers: a conversation's
// own memory then counts, 144 B each), the one also with a message received
// from each peer (its ring of incoming ids counts, 160 B): with the
// registry's own ids (what Client.Send gives a message without an id) and
// the registry's window, and with ids given by the caller ("foreign", 16
// characters as NewID makes them, their strings counted). The peers'
// address strings are made before and not counted. Run with
// -benchtime=100000x (what the README's per-message figure is measured at)
// or 1000000x.
func BenchmarkPendingMemory(b *testing.B) {
	for _, peers := range []int{1, 100} {
		b.Run(strconv.Itoa(peers)+"peers", func(b *testing.B) { pendingMemory(b, peers, false, false) })
	}
	for _, per := range []int{1, 2} {
		b.Run(strconv.Itoa(per)+"perpeer", func(b *testing.B) { pendingMemory(b, max(1, b.N/per), false, false) })
	}
	b.Run("1perpeer-incoming", func(b *testing.B) { pendingMemory(b, b.N, false, true) })
	b.Run("foreign", func(b *testing.B) { pendingMemory(b, 1, true, false) })
}

// pendingMemory registers b.N trackers over peers conversations, with
// foreign ids if foreign, and, if incoming, one message (id "x", not
// allocated) received from the tracker's peer after each.
func pendingMemory(b *testing.B, peers int, foreign, incoming bool) {
	ids := make([]string, b.N)
	if foreign {
		for i := range ids {
			ids[i] = newID()
		}
	}
	convs := make([]string, peers)
	for i := range convs {
		convs[i] = "peer" + strconv.Itoa(i) + "@example.org"
	}
	goroutines := runtime.NumGoroutine()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	r := NewRegistry(Config[Response]{MaxPending: -1})
	for i, id := range ids {
		if _, err := r.TryTrack(convs[i%len(convs)], id, TrackOptions{}); err != nil {
			b.Fatal(err)
		}
		if incoming {
			r.Incoming(convs[i%len(convs)], "", "x")
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Foreign id strings are counted: they were allocated before, but the
	// registry is what keeps them alive.
	idBytes := 0
	if foreign {
		idBytes = 16 * b.N
	}
	perTracker := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)+int64(idBytes)) / float64(b.N)
	b.ReportMetric(perTracker, "heap-B/tracker")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutines), "goroutines")
	runtime.KeepAlive(r)
	runtime.KeepAlive(ids)
}

// BenchmarkTransition measures one evidence-driven transition through the
// registry (lookup included), with no callbacks registered.
func BenchmarkTransition(b *testing.B) {
	r := NewRegistry(Config[Response]{MaxPending: -1})
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = newID()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%len(ids)]
		if i%len(ids) == 0 {
			b.StopTimer()
			r = NewRegistry(Config[Response]{MaxPending: -1})
			for _, id := range ids {
				r.TryTrack(bob, id, TrackOptions{})
			}
			b.StartTimer()
		}
		r.ServerAck(bob, id)
	}
}

// BenchmarkAdvance measures MessageTracker.Advance between two non-final
// states on a standalone tracker: the table step alone.
func BenchmarkAdvance(b *testing.B) {
	tr := NewStandalone[Response]("m")
	w0 := tr.word.Load()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tr.word.Store(w0)
		if _, ok := tr.Advance(DeliveredToServer, nil); !ok {
			b.Fatal("refused")
		}
	}
}

// BenchmarkTrack measures registering a message (index, timer heap, order).
func BenchmarkTrack(b *testing.B) {
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = newID()
	}
	r := NewRegistry(Config[Response]{MaxPending: -1})
	b.ReportAllocs()
	b.ResetTimer()
	for _, id := range ids {
		r.TryTrack(bob, id, TrackOptions{})
	}
}

// BenchmarkWritten measures giving a message its wire position, with 32
// concurrent senders' worth of messages registered but not yet written:
// each write moves its tracker past them.
func BenchmarkWritten(b *testing.B) {
	const behind = 32
	ids := make([]string, b.N+behind)
	for i := range ids {
		ids[i] = newID()
	}
	r := NewRegistry(Config[Response]{MaxPending: -1})
	for _, id := range ids[:behind] {
		r.TryTrack(bob, id, TrackOptions{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, id := range ids[:b.N] {
		b.StopTimer()
		r.TryTrack(bob, ids[i+behind], TrackOptions{})
		b.StartTimer()
		r.Written(bob, id)
	}
}

// BenchmarkCallbackDispatch measures handing one state change to the
// registry's OnStateChange hook and waiting until it ran, as a stream of
// receipts does: each op settles one tracker and waits for its callback.
// Before a callback goroutine per registry, every op started a goroutine.
func BenchmarkCallbackDispatch(b *testing.B) {
	ran := make(chan struct{}, 1)
	r := NewRegistry(Config[Response]{MaxPending: -1, OnStateChange: func(*MessageTracker, MessageState, MessageState, *Response) {
		ran <- struct{}{}
	}})
	defer r.Close()
	ids := make([]string, 64)
	for i := range ids {
		ids[i] = newID()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)]
		i++
		if _, err := r.TryTrack(bob, id, TrackOptions{Window: -1}); err != nil {
			b.Fatal(err)
		}
		r.Displayed(bob, "", id, "", nil)
		<-ran
	}
}

// BenchmarkRepeatedThreadMarker is a peer repeating a threaded marker while
// 10,000 messages of another thread are pending: each repeat must cost
// O(1), not a walk over them.
func BenchmarkRepeatedThreadMarker(b *testing.B) {
	r := NewRegistry(Config[Response]{})
	for i := range 10_000 {
		if _, err := r.TryTrack("bob@example.org", "o"+strconv.Itoa(i), TrackOptions{Thread: "busy"}); err != nil {
			b.Fatal(err)
		}
	}
	r.Incoming("bob@example.org", "", "theirs")
	r.Displayed("bob@example.org", "", "theirs", "quiet", nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Displayed("bob@example.org", "", "theirs", "quiet", nil)
	}
}

// BenchmarkStaleMarker is a peer repeating a marker of its oldest message
// while 10,000 later ones wait in late (their receipts came after a marker
// of the newest walked past them): each repeat must cost O(1), not a walk
// over them.
func BenchmarkStaleMarker(b *testing.B) {
	r := NewRegistry(Config[Response]{})
	const n = 10_001
	for i := range n {
		if _, err := r.TryTrack("bob@example.org", "o"+strconv.Itoa(i), TrackOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := r.TryTrack("bob@example.org", "newest", TrackOptions{}); err != nil {
		b.Fatal(err)
	}
	r.Delivered("bob@example.org", "", "newest", nil)
	r.Displayed("bob@example.org", "", "newest", "", nil)
	for i := 1; i < n; i++ {
		r.Delivered("bob@example.org", "", "o"+strconv.Itoa(i), nil) // late
	}
	r.Displayed("bob@example.org", "", "o0", "", nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Displayed("bob@example.org", "", "o0", "", nil)
	}
}

// BenchmarkSteadyFlow measures a registry under a steady stream of
// messages, as a sender with a window of 256 keeps it: each op registers
// a message and settles the oldest of the 256 pending (the one whose
// deadline the registry's timer is set for).
func BenchmarkSteadyFlow(b *testing.B) {
	const inFlight = 256
	r := NewRegistry(Config[Response]{MaxPending: -1})
	defer r.Close()
	ids := make([]string, 4*inFlight)
	for i := range ids {
		ids[i] = newID()
	}
	ring := make([]*Tracker[Response], 0, inFlight)
	track := func(i int) *Tracker[Response] {
		t, err := r.TryTrack(bob, ids[i%len(ids)], TrackOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	for i := range inFlight {
		ring = append(ring, track(i))
	}
	b.ReportAllocs()
	i := inFlight
	for b.Loop() {
		oldest := ring[i%inFlight]
		oldest.Advance(SeenByRecipient, nil)
		ring[i%inFlight] = track(i)
		i++
	}
}

// BenchmarkBurstDispatch measures a burst of 16 receipts read at once, per
// receipt: each settles a tracker whose callback must run, and the op
// waits until all 16 ran. "each" wakes the callback goroutine per change,
// as the reader did before Hold; "held" holds the registry during the burst
// and releases it before waiting, as the reader does now.
func BenchmarkBurstDispatch(b *testing.B) {
	const burst = 16
	for _, held := range []bool{false, true} {
		name := "each"
		if held {
			name = "held"
		}
		b.Run(name, func(b *testing.B) {
			var ran atomic.Int64
			done := make(chan struct{}, 1)
			r := NewRegistry(Config[Response]{MaxPending: -1, OnStateChange: func(*MessageTracker, MessageState, MessageState, *Response) {
				if ran.Add(1)%burst == 0 {
					done <- struct{}{}
				}
			}})
			defer r.Close()
			ids := make([]string, burst)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				for k := range ids {
					ids[k] = newID()
					if _, err := r.TryTrack(bob, ids[k], TrackOptions{Window: -1}); err != nil {
						b.Fatal(err)
					}
				}
				if held {
					r.Hold()
				}
				for _, id := range ids {
					r.Displayed(bob, "", id, "", nil)
				}
				r.Release()
				<-done
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/receipt")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*burst), "cpu-ns/receipt")
		})
	}
}

// processCPU returns the CPU time (user and system) of the process so far.
func processCPU() time.Duration { return procio.SelfCPU() }

// BenchmarkMessageFlow is the registry's share of one message as the
// client sends it, 256 in flight: registration, its id for the stanza,
// the wire position, the server's ack and the receipt of the message sent
// 256 earlier. "own" lets the registry make the id (what Send does); "random"
// makes a 96-bit random id first and registers it (what Send did before the
// registry made ids).
func BenchmarkMessageFlow(b *testing.B) {
	const inFlight = 256
	for _, own := range []bool{true, false} {
		name := "random"
		if own {
			name = "own"
		}
		b.Run(name, func(b *testing.B) {
			r := NewRegistry(Config[Response]{MaxPending: -1})
			defer r.Close()
			ring := make([]string, inFlight)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := ""
				if !own {
					id = newID()
				}
				t, err := r.TryTrack(bob, id, TrackOptions{})
				if err != nil {
					b.Fatal(err)
				}
				id = t.ID()
				r.Written(bob, id)
				r.ServerAck(bob, id)
				if old := ring[i%inFlight]; old != "" {
					r.Delivered(bob, "", old, nil)
				}
				ring[i%inFlight] = id
				i++
			}
		})
	}
}

// BenchmarkOwnID measures making an own id (Tracker.ID) and reading one
// back (every piece of evidence), against making a random one (NewID).
func BenchmarkOwnID(b *testing.B) {
	k := newOwnIDs()
	b.Run("format", func(b *testing.B) {
		b.ReportAllocs()
		var n uint64
		for b.Loop() {
			_ = k.format(n)
			n++
		}
	})
	b.Run("parse", func(b *testing.B) {
		id := k.format(12345)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := k.parse(id); !ok {
				b.Fatal("not parsed")
			}
		}
	})
	b.Run("random", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = newID()
		}
	})
}
