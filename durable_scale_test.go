package xmpptrack

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStoreDialStored100k: Dial on an SQLite store holding 100,000
// unsettled messages of the account (acknowledged by the server, waiting
// for receipts; 10,000 under the race detector) gives each its tracker
// back before it returns, and a receipt for the last one still counts. It
// logs how long Dial took (the target is at most 3 s for 100,000; timing
// is not asserted).
func TestStoreDialStored100k(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 100,000 messages")
	}
	n := 100_000
	if raceEnabled {
		n = 10_000
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	owner := store.Instance{Account: testJID.Bare().String(), Resource: testJID.Resourcepart()}
	deadline := time.Now().Add(time.Hour)
	for i := 0; i < n; i += 1000 {
		batch := &store.Batch{}
		for j := i; j < i+1000; j++ {
			id := fmt.Sprintf("stored-%06d", j)
			batch.Messages = append(batch.Messages, store.Message{ID: id, Owner: owner, To: bob.String(),
				Raw: []byte(`<message xmlns="jabber:client" to="bob@example.org" id="` + id + `"><body>hello</body></message>`), Deadline: deadline})
			batch.Changes = append(batch.Changes, store.Change{ID: id, State: tracking.DeliveredToServer})
		}
		if err := st.Commit(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	srv := newPeerServer(t)
	began := time.Now()
	// Dial reads and tracks every stored message: under -race on a loaded
	// machine (eight copies of the package's tests at once) that took
	// more than testWait, 30 s.
	c := dialPeerWithin(t, srv, Config{Store: st}, 5*time.Minute)
	t.Logf("Dial with %d stored unsettled messages took %v", n, time.Since(began).Round(time.Millisecond))
	if p := c.Stats().Pending; p != n {
		t.Fatalf("%d pending after Dial, want %d", p, n)
	}
	last := fmt.Sprintf("stored-%06d", n-1)
	tr := c.Tracker(last)
	if tr == nil || tr.State() != tracking.DeliveredToServer {
		t.Fatalf("tracker of %s: %v", last, tr)
	}
	pc := srv.next(t)
	seen := callbackRan(tr, tracking.DeliveredToRecipient)
	pc.send(`<message from='bob@example.org/pc' id='r1'><received xmlns='urn:xmpp:receipts' id='%s'/></message>`, last)
	waitClosed(t, seen)
}
