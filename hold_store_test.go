package xmpptrack

import (
	"path/filepath"
	"testing"
)

// TestStoreHoldsCallbacks: with Config.Store too, the connection's read
// hook that holds the callbacks' wake-ups while the reader works through
// what it read (readIdle) is installed. The hold delays only the
// callbacks: the store records each change as it is made (durable.made),
// which the finishing tests (finished_change_test.go) check with it.
func TestStoreHoldsCallbacks(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoCarbons: true})
	srv.next(t)
	if !c.batching.Load() {
		t.Fatal("the connection's read hook never ran: callbacks are not held with a store")
	}
}
