package xmpptrack

import (
	"testing"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestRestoringCounts: two announcements of one id's ABORTED (two Send
// calls with one id, each giving up a tracker of its own) skip the
// recording of both changes, even when both are made after the second
// announcement; a third change is recorded.
// (TestStoreUncertainRetry recorded a message ABORTED this way once Send's
// write-aheads no longer waited for the committer goroutine.)
func TestRestoringCounts(t *testing.T) {
	d := &durable{}
	d.restoring("m", tracking.Aborted, false)
	d.restoring("m", tracking.Aborted, false)
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range 2 {
		if ok, _ := d.wasRestored("m", tracking.Aborted); !ok {
			t.Fatalf("change %d: recorded, want skipped", i+1)
		}
	}
	if ok, _ := d.wasRestored("m", tracking.Aborted); ok {
		t.Error("a third change: skipped, want recorded")
	}
	if d.restored != nil {
		t.Errorf("entries left: %v", d.restored)
	}
}
