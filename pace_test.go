package xmpptrack

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
)

// TestSendPacedByWindow: Send waits while StreamManagement.Window messages
// are in flight, so a burst does not run ahead of the server's acks.
func TestSendPacedByWindow(t *testing.T) {
	const window = 3
	srv := newPeerServer(t)
	// No carbons: their IQ is written once the session is handed out,
	// which may be after Dial returned and after the first message below.
	// Unanswered once noAcks is set, it held a place in the window, and
	// the third Send waited: on a busy machine the test failed with "the
	// client wrote nothing".
	c := dialPeer(t, srv, Config{StreamManagement: sm.Config{Window: window}, NoCarbons: true})
	defer c.Close()
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob}) // the presence acknowledged too
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	for range window {
		if _, err := c.Send(waitCtx(t), Message{To: bob}); err != nil {
			t.Fatalf("Send within the window: %v", err)
		}
		pc.nextMessage(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, Message{To: bob}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send past the window with no ack: %v, want context.DeadlineExceeded", err)
	}
}

// writeAheads reports the ids of the messages its store writes ahead.
type writeAheads struct {
	store.Store
	ids chan<- string
}

func (s writeAheads) Commit(ctx context.Context, b *store.Batch) error {
	err := s.Store.Commit(ctx, b)
	if err == nil {
		for _, m := range b.Messages {
			s.ids <- m.ID
		}
	}
	return err
}

// TestSendWritesAheadBeforePacing: with a store, Send writes its message
// ahead before it waits for room in the send window (sm.State.Pace), so
// that concurrent senders the window holds back have their write-aheads
// committed together meanwhile. Waiting for the window first cut the
// group commit of 1,000 senders from about 200 messages to about 40.
func TestSendWritesAheadBeforePacing(t *testing.T) {
	const window, waiting = 2, 4
	srv := newPeerServer(t)
	ahead := make(chan string, 64)
	// No ack timeout: the connection held without acks stays up.
	c := dialPeer(t, srv, Config{Store: writeAheads{openStore(t), ahead}, StreamManagement: sm.Config{Window: window, AckTimeout: -1}, NoCarbons: true})
	defer c.Close()
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	for range window {
		if _, err := c.Send(waitCtx(t), Message{To: bob}); err != nil {
			t.Fatalf("Send within the window: %v", err)
		}
		pc.nextMessage(t)
	}
	ctx, cancel := context.WithCancel(waitCtx(t))
	defer cancel()
	errs := make(chan error, waiting)
	for i := range waiting {
		go func() {
			_, err := c.Send(ctx, Message{To: bob, ID: fmt.Sprint("w", i)})
			errs <- err
		}()
	}
	got := map[string]bool{}
	wait := waitCtx(t)
	for len(got) < waiting {
		select {
		case id := <-ahead:
			if strings.HasPrefix(id, "w") {
				got[id] = true
			}
		case <-wait.Done():
			t.Fatalf("%d of %d senders held back by a full window wrote ahead", len(got), waiting)
		}
	}
	cancel() // they still wait for the window: nothing was written
	for range waiting {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("Send held back by the window, its ctx cancelled: %v", err)
		}
	}
}

// dialPaced dials a scripted peer with a send window of window stanzas
// and no ack bound; the client is closed, and ctx (bounded by testWait)
// cancelled, when the test ends.
func dialPaced(t *testing.T, roots *x509.CertPool, now time.Time, window int) (*peerServer, *Client, *peerConn, context.Context) {
	t.Helper()
	srv, dial := newPipePeer(t)
	cfg := pipePeerConfig(roots, now, dial)
	cfg.StreamManagement = sm.Config{Window: window, AckTimeout: -1}
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	t.Cleanup(cancel)
	c, err := Dial(ctx, testJID, peerPassword, &cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c, srv.next(t), ctx
}

// TestSendPacesAgainAfterReconnection: senders waiting for the send window
// when the connection is lost wait for the next connection and pace there;
// they are not all let through at once. The stream is resumed, and
// <resumed/> acknowledges what the window held.
func TestSendPacesAgainAfterReconnection(t *testing.T) {
	const window, waiting = 2, 6
	roots, now := testRoots(t), time.Now()
	synctest.Test(t, func(t *testing.T) {
		srv, c, pc, ctx := dialPaced(t, roots, now, window)
		sendAcked(t, c, Message{To: bob}) // the presence acknowledged too
		srv.set(func(srv *peerServer) { srv.noAcks = true })
		for range window {
			if _, err := c.Send(ctx, Message{To: bob}); err != nil {
				t.Fatalf("Send within the window: %v", err)
			}
		}
		var sent atomic.Int32
		for range waiting {
			go func() {
				if _, err := c.Send(ctx, Message{To: bob}); err == nil {
					sent.Add(1)
				}
			}()
		}
		synctest.Wait()
		if n := sent.Load(); n != 0 {
			t.Fatalf("%d senders went through a full window", n)
		}
		pc.conn.Close()
		srv.next(t) // resumed: <resumed/> acknowledges the two in flight
		synctest.Wait()
		if n, st := sent.Load(), c.Stats(); n != window || st.Unacked > window {
			t.Errorf("after the reconnection %d senders went through, %d stanzas in flight; want %d, at most %d", n, st.Unacked, window, window)
		}
	})
}

// failAhead fails the write-ahead of the message with id fail.
type failAhead struct {
	store.Store
	fail string
}

func (s failAhead) Commit(ctx context.Context, b *store.Batch) error {
	for _, m := range b.Messages {
		if m.ID == s.fail {
			return errors.New("test: write-ahead refused")
		}
	}
	return s.Store.Commit(ctx, b)
}

// TestSendLeavesNoSlot: whatever becomes of a Send (sent, its write-ahead
// failed, its ctx ended while it waited for the window), it leaves no
// place in the send window taken: with a window of one and nothing in
// flight, the next caller gets the place at once.
func TestSendLeavesNoSlot(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: failAhead{openStore(t), "fail"}, StreamManagement: sm.Config{Window: 1, AckTimeout: -1}, NoCarbons: true})
	defer c.Close()
	srv.next(t)
	free := func(after string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(waitCtx(t), 100*time.Millisecond)
		defer cancel()
		s, err := c.sm.Pace(ctx)
		if err != nil || !s.Held() {
			t.Fatalf("after %s, the window's place is taken: %v, %v", after, s.Held(), err)
		}
		s.Release()
	}
	sendAcked(t, c, Message{To: bob})
	free("a message sent and acknowledged")
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "fail"}); err == nil {
		t.Fatal("Send with a failing write-ahead succeeded")
	}
	free("a failed write-ahead")
	held, err := c.sm.Pace(waitCtx(t)) // the window is full
	if err != nil || !held.Held() {
		t.Fatal(held.Held(), err)
	}
	ctx, cancel := context.WithTimeout(waitCtx(t), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, Message{To: bob}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a full window: %v, want context.DeadlineExceeded", err)
	}
	held.Release()
	free("a Send whose ctx ended while it waited for the window")
}

// TestSendWaitingSurvivesConnEnds: a connection that ends while a Send
// waits for room in the window is no write attempt of its own: the sender
// waits across more losses than it has write attempts (maxWrites), and
// sends once the window has room.
func TestSendWaitingSurvivesConnEnds(t *testing.T) {
	roots, now := testRoots(t), time.Now()
	synctest.Test(t, func(t *testing.T) {
		srv, c, pc, ctx := dialPaced(t, roots, now, 1)
		sendAcked(t, c, Message{To: bob})
		held, err := c.sm.Pace(ctx) // the window's one place, kept across connections
		if err != nil || !held.Held() {
			t.Fatal(held.Held(), err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := c.Send(ctx, Message{To: bob, ID: "waiter"})
			errc <- err
		}()
		synctest.Wait()
		for range maxWrites + 1 {
			pc.conn.Close()
			pc = srv.next(t)
			synctest.Wait()
		}
		select {
		case err := <-errc:
			t.Fatalf("Send returned while the window was full: %v", err)
		default:
		}
		held.Release()
		if err := <-errc; err != nil {
			t.Fatalf("Send after %d connection losses while it waited for the window: %v", maxWrites+1, err)
		}
	})
}

// TestCloseDuringReconnectStore: Close while a reconnection's <resume/>
// is unanswered leaves the store's saved session resumable (its id kept).
func TestCloseDuringReconnectStore(t *testing.T) {
	srv := newPeerServer(t)
	st := openStore(t)
	c := dialPeer(t, srv, Config{Store: st, NoCarbons: true})
	pc := srv.next(t)
	sendAcked(t, c, Message{To: bob})
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "unacked"}); err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	pc.nextMessage(t)
	srv.set(func(srv *peerServer) { srv.stall = "resume"; srv.noAcks = false })
	pc.conn.Close()
	select {
	case <-srv.stalled:
	case <-waitCtx(t).Done():
		t.Fatal("no reconnection")
	}
	c.Close()
	sess, err := st.Session(t.Context(), c.dur.owner)
	if err != nil {
		t.Fatal(err)
	}
	if sess.ID == "" {
		t.Errorf("the saved session has no resumption id: %+v", sess)
	}
}
