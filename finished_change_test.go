package xmpptrack

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// drainCallbacks waits until what the callbacks' goroutine had queued
// (a finish marker) ran.
func drainCallbacks(t *testing.T, c *Client) {
	t.Helper()
	probe := make(chan struct{})
	c.ev.push(func() { close(probe) })
	waitClosed(t, probe)
}

// waitSaved makes the recorder save the stream-management state until its
// inbound count is n (a count may wait for a batch of callbacks to end,
// then for the recorder's next round). Between attempts it waits for the
// recorder's next commit (its sessionEvery tick commits a count that
// moved) instead of asking again at once: a round with nothing to commit
// answers at once, and asking in a loop would spin.
func waitSaved(t *testing.T, c *Client, n uint32) {
	t.Helper()
	ctx := waitCtx(t)
	for {
		c.dur.saveSessionNow(ctx)
		// Taken after our own ask was answered: what closes it next is a
		// commit, which stores the session it saved before.
		c.dur.mu.Lock()
		progress := c.dur.progress
		c.dur.mu.Unlock()
		if s := c.dur.saved.Load(); s != nil && s.Inbound == n {
			return
		}
		select {
		case <-progress:
		case <-ctx.Done():
			t.Fatalf("saved inbound state %+v, want the count %d", c.dur.saved.Load(), n)
		}
	}
}

// syncReader makes the peer send an IQ request and waits for the client's
// answer: the reader has handled every stanza sent before.
func syncReader(t *testing.T, pc *peerConn, id string) {
	t.Helper()
	pc.send(`<iq type='get' id='%s' from='example.org'><query xmlns='urn:example:nothing'/></iq>`, id)
	for {
		if e := pc.next(t); e.XMLName.Local == "iq" && e.attr("id") == id {
			return
		}
	}
}

// stateIn returns the state the store holds for id.
func stateIn(t *testing.T, st store.Store, id string) tracking.MessageState {
	t.Helper()
	rec, err := st.Message(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.State
}

// TestStoreFinishedAfterChangeRecorded: with Config.Store, a receipt is
// not saved as finished while the state change it made is not recorded:
// a process killed then would never store the change, and the server,
// told it has the receipt, would not send it again. Message b's receipt
// comes while the callbacks of a's change are running, so b's change
// waits in the registry's queue, unrecorded. With and without
// Config.OnMessage (a marker on the callbacks' goroutine, or none).
func TestStoreFinishedAfterChangeRecorded(t *testing.T) {
	for _, onMessage := range []bool{false, true} {
		t.Run(fmt.Sprintf("OnMessage=%v", onMessage), func(t *testing.T) {
			srv := newPeerServer(t)
			st := openStorePath(t, filepath.Join(t.TempDir(), "track.db"))
			release, blocked := make(chan struct{}), make(chan struct{})
			var a atomic.Pointer[tracking.MessageTracker]
			cfg := Config{Store: st, NoCarbons: true,
				OnStateChange: func(tr *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
					if tr == a.Load() && to == tracking.DeliveredToRecipient {
						close(blocked)
						<-release
					}
				}}
			if onMessage {
				cfg.OnMessage = func(*Client, *Incoming) {}
			}
			c := dialPeer(t, srv, cfg)
			pc := srv.next(t)
			a.Store(sendAcked(t, c, Message{To: bob, Body: "a"}))
			b := sendAcked(t, c, Message{To: bob, Body: "b"})
			pc.nextMessage(t)
			pc.nextMessage(t)
			ran := callbackRan(b, tracking.DeliveredToRecipient)
			pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(a.Load().ID()))
			<-blocked
			pc.send(`<message from='bob@example.org/pc' id='r2'>%s</message>`, receiptFor(b.ID()))
			if st, err := b.Wait(waitCtx(t), tracking.DeliveredToRecipient); st != tracking.DeliveredToRecipient {
				t.Fatalf("b: %v, %v", st, err)
			}
			n := c.sm.Info().Handled // b's receipt is the last stanza counted
			drainCallbacks(t, c)
			c.dur.saveSessionNow(waitCtx(t))
			if s := c.dur.saved.Load(); s != nil && s.Inbound >= n {
				t.Fatalf("saved inbound count %d covers b's receipt (stanza %d); the store has b %v", s.Inbound, n, stateIn(t, st, b.ID()))
			}
			close(release)
			waitClosed(t, ran)
			waitSaved(t, c, n)
			if got := stateIn(t, st, b.ID()); got != tracking.DeliveredToRecipient {
				t.Errorf("the store has b %v once its receipt is saved as finished", got)
			}
		})
	}
}

// TestStoreFinishedWhenIdle: a stanza whose count waits for more changes
// than will ever be recorded (a tracker's callback held the batch of
// callbacks whose change was already recorded) finishes once the
// registry has nothing queued: the recorder looks every round.
func TestStoreFinishedWhenIdle(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoCarbons: true})
	pc := srv.next(t)
	tr := sendAcked(t, c, Message{To: bob, Body: "hi"})
	pc.nextMessage(t)
	release, blocked := make(chan struct{}), make(chan struct{})
	tr.OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
		if to == tracking.DeliveredToRecipient {
			close(blocked)
			<-release
		}
	})
	ran := callbackRan(tr, tracking.DeliveredToRecipient)
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(tr.ID()))
	<-blocked
	pc.send(`<presence from='bob@example.org/pc'/>`)
	syncReader(t, pc, "sync1")
	n := c.sm.Info().Handled
	close(release)
	waitClosed(t, ran)
	waitSaved(t, c, n)
}

// TestStoreFinishWaitsBounded: while a callback does not return, every
// later stanza's count waits (and so do our acks), but the waiting
// stanzas are kept as one entry per target, not one per stanza.
func TestStoreFinishWaitsBounded(t *testing.T) {
	srv := newPeerServer(t)
	release, blocked := make(chan struct{}), make(chan struct{})
	c := dialPeer(t, srv, Config{Store: openStorePath(t, filepath.Join(t.TempDir(), "track.db")), NoCarbons: true,
		OnStateChange: func(_ *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
			if to == tracking.DeliveredToRecipient {
				close(blocked)
				<-release
			}
		}})
	pc := srv.next(t)
	tr := sendAcked(t, c, Message{To: bob, Body: "hi"})
	pc.nextMessage(t)
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(tr.ID()))
	<-blocked
	for i := range 300 {
		pc.send(`<presence from='bob@example.org/pc' id='p%d'/>`, i)
	}
	syncReader(t, pc, "sync1")
	n := c.sm.Info().Handled
	c.dur.fin.mu.Lock()
	waits := len(c.dur.fin.waits)
	c.dur.fin.mu.Unlock()
	if waits > 2 {
		t.Errorf("%d entries wait for a blocked callback, want at most 2", waits)
	}
	close(release)
	waitSaved(t, c, n)
}

// TestStoreLastWordCommitsChanges: the recorder's last word (saveSession,
// when Close stops it) commits the changes queued by then with the
// stream-management state, whose inbound count may cover their stanzas.
func TestStoreLastWordCommitsChanges(t *testing.T) {
	st := openStorePath(t, filepath.Join(t.TempDir(), "track.db"))
	d, err := openDurable(context.Background(), st, testJID, nil)
	if err != nil {
		t.Fatal(err)
	}
	close(d.stop) // the recorder ends at once: the test is the recorder now
	<-d.done
	defer d.lease.Release()
	if err := d.writeAhead(context.Background(), "m1", Message{To: bob, Body: "hi"}, nil, time.Time{}, &hold{}); err != nil {
		t.Fatal(err)
	}
	d.record("m1", tracking.DeliveredToServer, time.Now(), nil)
	d.saveSession()
	if got := stateIn(t, st, "m1"); got != tracking.DeliveredToServer {
		t.Errorf("after the last word the store has m1 %v, want DELIVERED_TO_SERVER", got)
	}
}
