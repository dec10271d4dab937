package trackcore

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestCloseBacklogMemory closes a registry with n pending trackers, which
// queues n CLOSED changes for OnStateChange at once. The queue must cost
// about those changes while they wait (a slice that grew by copying
// allocated about five times its final array), and once they ran the
// registry must not keep the backlog's storage.
func TestCloseBacklogMemory(t *testing.T) {
	const n = 50_000
	var ran atomic.Int64
	done := make(chan struct{})
	r := NewRegistry(Config[Response]{MaxPending: -1, Window: -1, OnStateChange: func(*MessageTracker, MessageState, MessageState, *Response) {
		if ran.Add(1) == n {
			close(done)
		}
	}})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	for range n {
		if _, err := r.TryTrack(bob, "", TrackOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	r.Close()
	runtime.ReadMemStats(&ms)
	closing := ms.TotalAlloc - before
	// A lost change would leave done open: fail with the count, not at
	// go test's timeout.
	deadline := time.After(2 * time.Minute)
	select {
	case <-done:
	case <-deadline:
		t.Fatalf("OnStateChange ran %d of %d CLOSED changes", ran.Load(), n)
	}
	for held(r) > 0 { // the dispatcher still holds the batch it ran
		select {
		case <-deadline:
			t.Fatalf("the dispatcher still holds %d changes after running them all", held(r))
		default:
			runtime.Gosched()
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	kept := int64(ms.HeapAlloc) - int64(base)
	runtime.KeepAlive(r)

	size := uint64(unsafe.Sizeof(change[Response]{}))
	t.Logf("Close of %d pending trackers allocated %d KiB (%.1f B per change of %d B); %d KiB kept after the callbacks ran",
		n, closing/1024, float64(closing)/n, size, kept/1024)
	if limit := n*size*5/4 + 64<<10; closing > limit {
		t.Errorf("Close allocated %d B for %d changes of %d B, more than %d", closing, n, size, limit)
	}
	if kept > 256<<10 {
		t.Errorf("the registry keeps %d KiB after a backlog of %d changes ran", kept/1024, n)
	}
}
