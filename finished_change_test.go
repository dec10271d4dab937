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

// TestStoreAcksPassBlockedCallbacks: with Config.Store, a state-change
// callback that does not return (Config.OnStateChange, or a tracker's
// own) holds back neither the record of later changes nor the acks of
// later stanzas: the server sees an <a h/> that covers them, while the
// store holds every change of the stanzas it covers (message b's receipt
// comes while a's callback blocks). With and without Config.OnMessage (a
// marker on the callbacks' goroutine, or none). An OnMessage that does not
// return holds back the acks of its stanza and of everything after it.
func TestStoreAcksPassBlockedCallbacks(t *testing.T) {
	for _, tc := range []struct {
		block     string // what does not return
		onMessage bool
	}{
		{"OnStateChange", false},
		{"OnStateChange", true},
		{"tracker", false},
		{"tracker", true},
		{"OnMessage", true},
	} {
		t.Run(fmt.Sprintf("%s/OnMessage=%v", tc.block, tc.onMessage), func(t *testing.T) {
			srv := newPeerServer(t)
			st := openStorePath(t, filepath.Join(t.TempDir(), "track.db"))
			release, blocked := make(chan struct{}), make(chan struct{})
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			block := func() {
				close(blocked)
				<-release
			}
			var a atomic.Pointer[tracking.MessageTracker]
			cfg := Config{Store: st, NoCarbons: true, NoReceipts: true}
			if tc.block == "OnStateChange" {
				cfg.OnStateChange = func(tr *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
					if tr == a.Load() && to == tracking.DeliveredToRecipient {
						block()
					}
				}
			}
			if tc.onMessage {
				cfg.OnMessage = func(_ *Client, m *Incoming) {
					if tc.block == "OnMessage" && m.ID == "in1" {
						block()
					}
				}
			}
			c := dialPeer(t, srv, cfg)
			pc := srv.next(t)
			a.Store(sendAcked(t, c, Message{To: bob, Body: "a"}))
			b := sendAcked(t, c, Message{To: bob, Body: "b"})
			pc.nextMessage(t)
			pc.nextMessage(t)
			if tc.block == "tracker" {
				a.Load().OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
					if to == tracking.DeliveredToRecipient {
						block()
					}
				})
			}
			if tc.block == "OnMessage" {
				pc.send(`<message from='bob@example.org/pc' type='chat' id='in1'><body>1</body></message>`)
			} else {
				pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(a.Load().ID()))
			}
			<-blocked
			k := c.sm.Info().Handled // the stanza whose callback blocks
			pc.send(`<message from='bob@example.org/pc' id='r2'>%s</message>`, receiptFor(b.ID()))
			for i := range 3 {
				pc.send(`<presence from='bob@example.org/pc' id='p%d'/>`, i)
			}
			syncReader(t, pc, "sync1")
			n := c.sm.Info().Handled // the answered IQ is the last stanza counted

			if tc.block == "OnMessage" {
				// Saved as far as it goes: in1 stays out, so do the
				// stanzas after it, and so does every ack.
				c.dur.saveSessionNow(waitCtx(t))
				if s := c.dur.saved.Load(); s != nil && s.Inbound >= k {
					t.Fatalf("saved inbound count %d covers in1 (stanza %d), whose OnMessage has not returned", s.Inbound, k)
				}
				pc.send(`<r xmlns='urn:xmpp:sm:3'/>`)
				for h := uint32(0); h != k-1; {
					h = nextAck(t, srv, k)
					if h >= k {
						t.Fatalf("<a h='%d'/> covers in1 (stanza %d), whose OnMessage has not returned", h, k)
					}
				}
				close(release)
				waitSaved(t, c, n)
				return
			}
			for h := uint32(0); h != n; { // unsolicited, once the store saved them
				if h = nextAck(t, srv, n); h > n {
					t.Fatalf("<a h='%d'/>, more than the %d stanzas received", h, n)
				}
			}
			for _, tr := range []*tracking.MessageTracker{a.Load(), b} {
				if got := stateIn(t, st, tr.ID()); got != tracking.DeliveredToRecipient {
					t.Errorf("<a h='%d'/> covers the receipt of %s, which the store has %v", n, tr.ID(), got)
				}
			}
		})
	}
}

// nextAck returns the h of the next <a/> the client writes; want is what
// the test waits for, for the failure's message.
func nextAck(t *testing.T, srv *peerServer, want uint32) uint32 {
	t.Helper()
	select {
	case h := <-srv.acks:
		return h
	case <-time.After(testWait):
		t.Fatalf("no <a h='%d'/> while a callback does not return", want)
		return 0
	}
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
