package xmpptrack

import (
	"path/filepath"
	"testing"
)

// TestStoreHoldsCallbacks: with Config.Store too, the connection's read
// hook holds the callbacks' wake-ups while the reader works through what
// it read (readIdle): a stanza's count waits for its changes' callbacks
// (durable.inbound), so holding them cannot let the count run ahead.
func TestStoreHoldsCallbacks(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoCarbons: true})
	srv.next(t)
	if !c.batching.Load() {
		t.Fatal("the connection's read hook never ran: callbacks are not held with a store")
	}
}
