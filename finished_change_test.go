package xmpptrack

import (
	"path/filepath"
	"testing"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStoreFinishedAfterChangeRecorded: with Config.Store, a receipt is
// not saved as finished (nor acknowledged to the server) while the state
// change it made has not been recorded and reported to
// Config.OnStateChange: a process killed then would never store the
// change, and the server, told it has the receipt, would not send it
// again. Once the change's callbacks return, it counts. With and without
// Config.OnMessage (a marker on the callbacks' goroutine, or none).
func TestStoreFinishedAfterChangeRecorded(t *testing.T) {
	for _, onMessage := range []bool{false, true} {
		name := "without OnMessage"
		if onMessage {
			name = "with OnMessage"
		}
		t.Run(name, func(t *testing.T) {
			srv := newPeerServer(t)
			release, blocked := make(chan struct{}), make(chan struct{})
			cfg := Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoCarbons: true,
				OnStateChange: func(_ *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
					if to == tracking.DeliveredToRecipient {
						close(blocked)
						<-release
					}
				}}
			if onMessage {
				cfg.OnMessage = func(*Client, *Incoming) {}
			}
			c := dialPeer(t, srv, cfg)
			pc := srv.next(t)
			tr, err := c.Send(waitCtx(t), Message{To: bob, Body: "hi"})
			if err != nil {
				t.Fatal(err)
			}
			pc.nextMessage(t)
			ran := callbackRan(tr, tracking.DeliveredToRecipient)
			pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(tr.ID()))
			<-blocked
			// The answer to <r/> comes once the reader handled the receipt.
			pc.send(`<r xmlns='urn:xmpp:sm:3'/>`)
			n := c.sm.Info().Handled // the receipt is the last stanza counted
			// What the callbacks' goroutine had queued (a marker) has run.
			probe := make(chan struct{})
			c.ev.push(func() { close(probe) })
			waitClosed(t, probe)
			c.dur.saveSessionNow(waitCtx(t))
			if s := c.dur.saved.Load(); s != nil && s.Inbound >= n {
				t.Fatalf("saved inbound count %d covers the receipt (stanza %d), whose change was not recorded", s.Inbound, n)
			}
			close(release)
			waitClosed(t, ran)
			// The registry may count the change as queued until its batch
			// of callbacks ends: the next round of the recorder after that
			// saves the count.
			ctx := waitCtx(t)
			for {
				c.dur.saveSessionNow(ctx)
				if s := c.dur.saved.Load(); s != nil && s.Inbound == n {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("saved inbound state %+v once the change was recorded, want the count %d", c.dur.saved.Load(), n)
				}
			}
		})
	}
}
