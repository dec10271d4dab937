package xmpptrack

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestCloseDuringPublish: Close called while a reconnection is being
// handed out to senders ends that connection at once. Close saw no session
// to close gracefully; a publish slipping in before Close ended the
// connection loop left the connection to closeGrace's deadline, with
// nobody closing its stream, so Close took 2 s.
func TestCloseDuringPublish(t *testing.T) {
	roots, now := testRoots(t), time.Now()
	synctest.Test(t, func(t *testing.T) {
		srv, dial := newPipePeer(t)
		cfg := pipePeerConfig(roots, now, dial)
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		var connected atomic.Int32
		c.Observe(Observer{Connected: func(bool) { connected.Add(1) }})
		pc := srv.next(t)
		release := make(chan struct{})
		held := func() { <-release }
		c.publishHook.Store(&held)
		pc.conn.Close()
		srv.next(t) // the reconnection
		synctest.Wait()
		if st := c.Stats(); st.Connected {
			t.Fatalf("the reconnection was handed out while its publish was held: %+v", st)
		}
		// Close looks at the session (none yet), then the publish runs,
		// then Close ends the connection loop.
		inClose := func() {
			close(release)
			synctest.Wait()
		}
		c.closeHook.Store(&inClose)
		start := time.Now()
		c.Close()
		if d := time.Since(start); d >= closeGrace {
			t.Errorf("Close took %v: the connection published during Close waited for closeGrace (%v)", d, closeGrace)
		}
		// Not handed out: not counted, no Connected observer.
		if st := c.Stats(); st.Reconnections != 0 || st.Resumptions != 0 {
			t.Errorf("the reconnection Close dropped was handed out: %+v", st)
		}
		if n := connected.Load(); n != 0 {
			t.Errorf("Connected observed %d times for the reconnection Close dropped", n)
		}
	})
}

// TestCloseDuringReconnect: Close while a reconnection is being set up
// (its <resume/> unanswered) ends it, and is not the client's permanent
// failure: Err stays nil, and the stream stays resumable (a store would
// save it for the next process).
func TestCloseDuringReconnect(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	srv.set(func(srv *peerServer) { srv.stall = "resume" })
	pc.conn.Close()
	select {
	case <-srv.stalled:
	case <-waitCtx(t).Done():
		t.Fatal("no reconnection")
	}
	c.Close()
	if err := c.Err(); err != nil {
		t.Errorf("Err after Close: %v, want nil", err)
	}
	if !c.sm.Info().Resumable {
		t.Error("Close during a reconnection made the stream non-resumable (the client gave up as on a permanent failure)")
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob}); !errors.Is(err, ErrClientClosed) || errors.Unwrap(err) != nil {
		t.Errorf("Send after Close: %v, want ErrClientClosed with no cause", err)
	}
}

// TestDialRacingClose: Close begins (through a test hook: only a hook can
// call it before Dial returns) while Dial waits for its first connection's
// <enabled/>, which arrives between Close's look and the loop's end, so
// publish refuses the connection: Dial reports ErrClientClosed, not a
// connection that ended before stream management was enabled.
func TestDialRacingClose(t *testing.T) {
	roots, now := testRoots(t), time.Now()
	synctest.Test(t, func(t *testing.T) {
		srv, dial := newPipePeer(t)
		srv.set(func(srv *peerServer) { srv.stall = "enable" })
		cfg := pipePeerConfig(roots, now, dial)
		cfg.beforeWait = func(c *Client) {
			pc := srv.next(t)
			<-srv.stalled
			synctest.Wait()
			hook := func() {
				pc.write(`<enabled xmlns='urn:xmpp:sm:3' id='x' resume='true'/>`)
				synctest.Wait()
			}
			c.closeHook.Store(&hook)
			c.Close()
		}
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		if c != nil || !errors.Is(err, ErrClientClosed) {
			t.Errorf("Dial racing Close: %v, %v; want ErrClientClosed", c, err)
		}
	})
}
