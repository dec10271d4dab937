package xmpptrack

import (
	"context"
	"crypto/tls"
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
		cfg := Config{
			Addr: "peer", DirectTLS: true, NoCarbons: true, dial: dial,
			TLSConfig:  &tls.Config{RootCAs: roots, Time: func() time.Time { return now }},
			MinBackoff: time.Second, MaxBackoff: time.Second,
		}
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
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
	})
}
