//go:build !race

package trackcore

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

// TestQueueOverlapAllocs checks that the callback queue allocates nothing in
// steady state when changes are queued while a batch's callbacks run and
// the next batch runs alone: ordinary traffic, receipts arriving while
// OnStateChange runs. The two lists of blocks (the queue and the running
// batch) need two kept blocks; with one, every overlap allocated a block
// (review rv-late: 1 allocation per cycle with one change queued, 6 with
// twenty). The registry's own state changes allocate nothing, so any
// allocation per cycle is the queue's.
func TestQueueOverlapAllocs(t *testing.T) {
	const cycles = 400
	var block atomic.Bool
	entered, proceed := make(chan struct{}), make(chan struct{})
	r := NewRegistry(Config[Response]{MaxPending: -1, Window: -1,
		OnStateChange: func(*MessageTracker, MessageState, MessageState, *Response) {
			if block.Load() {
				block.Store(false)
				entered <- struct{}{}
				<-proceed
			}
		}})
	defer r.Close()
	ids := make([]string, (1+2+20+2)*(cycles/2+5))
	for i := range ids {
		ids[i] = strconv.Itoa(i)
		track(t, r, bob, ids[i], TrackOptions{})
	}
	// The dispatcher runs the last change's callbacks on its own goroutine;
	// held counts them until they returned.
	drained := func() {
		for held(r) > 0 {
			runtime.Gosched()
		}
	}
	i := 0
	cycle := func(k int) {
		block.Store(true)
		r.ServerAck(bob, ids[i])
		<-entered
		for j := 1; j <= k; j++ {
			r.ServerAck(bob, ids[i+j]) // queued while the batch runs
		}
		proceed <- struct{}{}
		drained()
		r.ServerAck(bob, ids[i+k+1]) // a batch without overlap
		drained()
		i += k + 2
	}
	for _, k := range []int{1, 20} {
		for range 5 {
			cycle(k)
		}
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		for range cycles / 2 {
			cycle(k)
		}
		runtime.ReadMemStats(&b)
		if per := float64(b.Mallocs-a.Mallocs) / (cycles / 2); per > 0.5 {
			t.Errorf("%d change(s) queued during a callback: %.2f allocations per cycle, want none", k, per)
		}
	}
}
